"""Training speed on Fashion-MNIST: the usual loop, one model, K stacked models, fp32 and bf16.

Side by side in this process (batch 60, Adam lr 1.2e-3, 50% masks, the same 55,000 images:
Fashion-MNIST less the 5,000 validation images, no evaluation):
- the usual loop, as many LTH reproductions write it (LeNet-300-100 only): torchvision's dataset
  with ToTensor and Normalize through a DataLoader, the default Adam, gradients masked through
  numpy every step;
- lthutils, one model in fp32 (`train()`, a stack of one);
- lthutils, K = 2, 4, 8, 16 stacked models (`train_models()`), in fp32 and in bf16;
for LeNet-300-100 and for the small fully connected nets of Q1 (fc1x10, fc1x100, fc2x50), each
timed over STEPS steps and reported per model-epoch (917 steps). Also: the fp32 and bf16 peaks
of a 2048 x 2048 matmul; the time of a lone model (a stack of one) against the pair that a twin
used to make of it; and a whole IMP run (10 rounds, ticket + reinit, 3 seeds, one epoch of
20,000 images per round, evaluation every 100 steps) one model at a time with `train()` and
stacked through `find_tickets`, in both precisions. Prints tables and writes
bench/results/latest.json.

    python bench/training_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from lthutils.config import ExperimentConfig
from lthutils.cost import cpu_name, forward_flops
from lthutils.data import data_root, load_dataset, make_splits, split_indices
from lthutils.experiments import find_tickets, prepare
from lthutils.lottery import Ticket, derive_seed, fresh_weights, kinds_at, next_mask
from lthutils.models import build_model
from lthutils.pruning import Mask, prune_layerwise
from lthutils.training import train, train_models

RESULTS = Path(__file__).parent / "results" / "latest.json"
STACK_SIZES = (2, 4, 8, 16)
STEPS = 300  # per timed run; a model-epoch of 55,000 images is 917 steps
MODELS = {"lenet300": {"model": "lenet300"}} | {
    f"fc{layers}x{width}": {"model": "fc", "n_layers": layers, "n_neurons": width}
    for layers, width in ((1, 10), (1, 100), (2, 50))
}


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


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / min(seconds) / 1e9


def stacked_seconds(config: ExperimentConfig, splits, count: int, seed: int) -> float:
    """Seconds per model-epoch of `count` stacked models (train_seconds is per model)."""
    template = build_model(config, (1, 28, 28), 10, seed=0)
    mask = half_mask(template)
    models = [Ticket(mask, fresh_weights(template, seed + k), 0, 0).model(template) for k in range(count)]
    results = train_models(models, [mask] * count, [splits] * count, config, list(range(seed, seed + count)))
    return results[0].train_seconds * math.ceil(len(splits.train_labels) / config.batch_size) / config.iterations


def imp_one_at_a_time(config: ExperimentConfig) -> float:
    """Seconds for IMP (ticket + controls, every seed), one model at a time with train()."""
    setting = prepare(config)
    started = time.perf_counter()
    for seed in config.seeds:
        splits = setting.splits(seed)
        ticket = Ticket(
            Mask.ones(setting.template), fresh_weights(setting.template, derive_seed(seed, "init")), seed, 0
        )
        for round_index in range(config.rounds + 1):
            for kind in kinds_at(round_index, config.controls):
                variant = ticket.variant(kind, setting.template, splits)
                model = variant.model(setting.template)
                train(model, variant.mask, splits, config, derive_seed(seed, round_index, "data"))
                if kind == "ticket":
                    trained = model
            ticket = Ticket(next_mask(trained, ticket, config), ticket.weights, seed, round_index + 1)
    return time.perf_counter() - started


def imp_stacked(config: ExperimentConfig) -> float:
    """Seconds for the same IMP run through find_tickets (stacked), into a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        find_tickets(dataclasses.replace(config, exp_root=folder, model_root=folder))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median reported)")
    args = parser.parse_args()
    dataset = load_dataset("fashionmnist")
    splits = make_splits(dataset, None, None, seed=0)
    peaks = {name: matmul_peak_gflops(dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"matmul peak (2048 x 2048): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    report = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "task": "Fashion-MNIST 55,000 images, batch 60, Adam, 50% masks; seconds per model-epoch",
        "matmul_peak_gflops": peaks,
        "models": {},
    }

    base = ExperimentConfig(iterations=STEPS, eval_every=0, quiet=True)
    print(f"\n{'model':9} {'variant':22} {'s/model-epoch':>14} {'vs one fp32':>12} {'GFLOP/s':>8} {'of peak':>8}")
    for name, fields in MODELS.items():
        config = dataclasses.replace(base, **fields).resolved()
        epoch_flops = 3 * forward_flops(build_model(config, (1, 28, 28), 10, 0), (1, 28, 28)) * 55_000
        variants = {"one model, fp32": (config, 1)}
        for precision in ("fp32", "bf16"):
            for count in STACK_SIZES:
                variants[f"K={count}, {precision}"] = (dataclasses.replace(config, precision=precision), count)
        seconds: dict[str, list[float]] = {label: [] for label in variants}
        for repeat in range(args.repeats):  # round-robin: a slow spell of this shared machine hits every variant
            for label, (variant, count) in variants.items():
                seconds[label].append(stacked_seconds(variant, splits, count, repeat))
        rows = {label: {"seconds_per_model_epoch": statistics.median(s), "all": s} for label, s in seconds.items()}
        one = rows["one model, fp32"]["seconds_per_model_epoch"]
        for label, row in rows.items():
            row["speedup_vs_one_fp32"] = one / row["seconds_per_model_epoch"]
            row["gflops"] = epoch_flops / row["seconds_per_model_epoch"] / 1e9
            peak = peaks["bf16" if "bf16" in label else "fp32"]
            print(
                f"{name:9} {label:22} {row['seconds_per_model_epoch']:14.3f} {row['speedup_vs_one_fp32']:11.2f}x "
                f"{row['gflops']:8.1f} {row['gflops'] / peak:8.0%}"
            )
        report["models"][name] = {"dense_gflop_per_epoch": epoch_flops / 1e9, "variants": rows}

    lenet300 = dataclasses.replace(base, model="lenet300").resolved()
    normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dataset.mean,), (dataset.std,))])
    pool = torchvision.datasets.FashionMNIST(data_root(), train=True, transform=normalize)
    train_indices, _ = split_indices(dataset, None, None, seed=0)
    loader = DataLoader(Subset(pool, train_indices.tolist()), batch_size=60, shuffle=True)
    template = build_model(lenet300, (1, 28, 28), 10, seed=0)
    mask = half_mask(template)
    usual = statistics.median(
        usual_epoch(Ticket(mask, fresh_weights(template, r), 0, 0).model(template), mask, loader)
        for r in range(args.repeats)
    )
    one = report["models"]["lenet300"]["variants"]["one model, fp32"]["seconds_per_model_epoch"]
    pair = report["models"]["lenet300"]["variants"]["K=2, fp32"]["seconds_per_model_epoch"] * 2
    report["usual_loop_seconds_per_epoch"] = usual
    report["lone_model_vs_twin_pair"] = {"lone_seconds": one, "pair_seconds": pair, "ratio": one / pair}
    print(f"\nusual DataLoader + ToTensor loop, LeNet-300-100: {usual:.3f} s/epoch ({usual / one:.1f}x one model here)")
    print(
        f"a lone LeNet-300-100 (stack of one): {one:.3f} s/epoch; the pair a twin made of it: {pair:.3f} s "
        f"({one / pair:.2f} of it)"
    )

    imp = {}
    for precision in ("fp32", "bf16"):
        config = ExperimentConfig(
            epochs=1,
            num_train=20_000,
            rounds=10,
            seeds=(0, 1, 2),
            controls=("reinit",),
            precision=precision,
            quiet=True,
        ).resolved()
        old, new = imp_one_at_a_time(config), imp_stacked(config)
        imp[precision] = {"one_at_a_time_seconds": old, "stacked_seconds": new, "speedup": old / new}
        print(
            f"IMP {precision}, 10 rounds x 3 seeds, ticket + reinit (63 trainings of one epoch of 20,000 images, "
            f"evaluation every 100 steps): one at a time {old:.1f} s, stacked {new:.1f} s ({old / new:.2f}x)"
        )
    report["imp_10_rounds_3_seeds_ticket_reinit"] = imp
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
