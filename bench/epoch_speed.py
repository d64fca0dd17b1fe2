"""One masked training epoch of LeNet-300-100 on Fashion-MNIST: the usual loop vs lthutils.

The usual loop, as many LTH reproductions write it: torchvision's dataset with ToTensor and
Normalize through a DataLoader, the default Adam, gradients masked through numpy every step.
lthutils: in-memory normalized tensors, index-slice batches, fused Adam, masks applied in place.
Both train the same 55,000 images (Fashion-MNIST less the 5,000 validation images), batch 60,
with the same 50% masks, side by side in this process. Prints a table and writes
bench/results/epoch_speed.json.

    python bench/epoch_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from lthutils.config import ExperimentConfig
from lthutils.data import data_root, load_dataset, make_splits, split_indices
from lthutils.lottery import Ticket, fresh_weights
from lthutils.models import build_model
from lthutils.pruning import Mask, prune_layerwise
from lthutils.training import train

RESULTS = Path(__file__).parent / "results" / "epoch_speed.json"


def half_mask(model) -> Mask:
    mask = Mask.ones(model)
    generator = torch.Generator().manual_seed(0)
    scores = {name: torch.rand(m.shape, generator=generator) for name, m in mask.items()}
    return prune_layerwise(scores, mask, {name: 0.5 for name in mask})


def usual_epoch(model, mask: Mask, loader: DataLoader) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    params = dict(model.named_parameters())
    masks = {name: m.numpy() for name, m in mask.items()}
    started = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        for name, m in masks.items():
            params[name].grad.data = torch.from_numpy(params[name].grad.numpy() * m)
        optimizer.step()
    return time.perf_counter() - started


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per variant (median reported)")
    args = parser.parse_args()
    config = ExperimentConfig(model="lenet300", dataset="fashionmnist", epochs=1, eval_every=0, quiet=True).resolved()
    dataset = load_dataset("fashionmnist")
    splits = make_splits(dataset, None, None, seed=0)
    template = build_model(config, dataset.input_shape, dataset.num_classes, seed=0)
    mask = half_mask(template)

    normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dataset.mean,), (dataset.std,))])
    pool = torchvision.datasets.FashionMNIST(data_root(), train=True, transform=normalize)
    train_indices, _ = split_indices(dataset, None, None, seed=0)
    loader = DataLoader(Subset(pool, train_indices.tolist()), batch_size=config.batch_size, shuffle=True)

    times = {"usual DataLoader + ToTensor loop": [], "lthutils train()": []}
    for repeat in range(args.repeats):
        model = Ticket(mask, fresh_weights(template, repeat), 0, 0).model(template)
        times["usual DataLoader + ToTensor loop"].append(usual_epoch(model, mask, loader))
        model = Ticket(mask, fresh_weights(template, repeat), 0, 0).model(template)
        times["lthutils train()"].append(train(model, mask, splits, config, data_seed=repeat).train_seconds)

    baseline = statistics.median(times["usual DataLoader + ToTensor loop"])
    report = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "task": "LeNet-300-100, Fashion-MNIST 55,000 images, batch 60, Adam, 50% masks, one epoch",
        "variants": {
            name: {
                "seconds_per_epoch": statistics.median(values),
                "all": values,
                "speedup": baseline / statistics.median(values),
            }
            for name, values in times.items()
        },
    }
    print(f"{'variant':36} {'s/epoch (median)':>17} {'speed-up':>9}")
    for name, row in report["variants"].items():
        print(f"{name:36} {row['seconds_per_epoch']:17.2f} {row['speedup']:8.1f}x")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
