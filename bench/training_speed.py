"""Training speed of LeNet-300-100 on Fashion-MNIST: the usual loop, lthutils, batched lthutils.

Side by side in this process, each timed over whole epochs (batch 60, Adam lr 1.2e-3, 50% masks,
the same 55,000 images: Fashion-MNIST less the 5,000 validation images, no evaluation):
- the usual loop, as many LTH reproductions write it: torchvision's dataset with ToTensor and
  Normalize through a DataLoader, the default Adam, gradients masked through numpy every step;
- lthutils `train()`: in-memory normalized tensors, index-slice batches, fused Adam, in-place masks;
- lthutils `train_batched()` for K = 1, 2, 4, 8, 16 models at once (seconds per model-epoch);
- a matrix-multiply peak probe (large square fp32 matmul) to put GFLOP/s in proportion;
- a whole IMP run (10 rounds, ticket + reinit, 3 seeds, 1 epoch per round, evaluation every 100
  steps) the old way, one model at a time with `train()`, and the batched way, `find_tickets`.
Prints a table and writes bench/results/latest.json.

    python bench/training_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from lthutils.batched import train_batched
from lthutils.config import ExperimentConfig
from lthutils.data import data_root, load_dataset, make_splits, split_indices
from lthutils.experiments import find_tickets, prepare
from lthutils.lottery import Ticket, derive_seed, fresh_weights, kinds_at, next_mask
from lthutils.models import build_model
from lthutils.pruning import Mask, prune_layerwise
from lthutils.training import train

RESULTS = Path(__file__).parent / "results" / "latest.json"
BATCHED_SIZES = (1, 2, 4, 8, 16)


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


class PeakMemory:
    """Peak resident memory (bytes) above the level at entry, sampled every 2 ms from /proc."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @property
    def used(self) -> int:
        return self.peak - self.start


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / min(seconds) / 1e9


def imp_one_at_a_time(config: ExperimentConfig, setting) -> tuple[float, float]:
    """Seconds for IMP (ticket + controls, every seed) training one model at a time with train(),
    and the dense FLOPs its trainings and evaluations did (the work any schedule has to do)."""
    started = time.perf_counter()
    flops = 0.0
    for seed in config.seeds:
        splits = setting.splits(seed)
        ticket = Ticket(
            Mask.ones(setting.template), fresh_weights(setting.template, derive_seed(seed, "init")), seed, 0
        )
        for round_index in range(config.rounds + 1):
            for kind in kinds_at(round_index, config.controls):
                variant = ticket.variant(kind, setting.template)
                model = variant.model(setting.template)
                result = train(model, variant.mask, splits, config, derive_seed(seed, round_index, "data"))
                val_evals = len(result.history)
                test_evals = sum(not math.isnan(accuracy) for _, _, accuracy in result.history)
                flops += epoch_flops(result.examples) + FORWARD_FLOPS * (
                    val_evals * len(splits.val_labels) + test_evals * len(splits.test_labels)
                )
                if kind == "ticket":
                    trained = model
            ticket = Ticket(next_mask(trained, ticket.mask, config), ticket.weights, seed, round_index + 1)
    return time.perf_counter() - started, flops


def imp_batched(config: ExperimentConfig) -> float:
    """Seconds for the same IMP run through find_tickets (batched), into a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        find_tickets(dataclasses.replace(config, exp_root=folder, model_root=folder))
        return time.perf_counter() - started


FORWARD_FLOPS = 2 * (784 * 300 + 300 * 100 + 100 * 10)  # one LeNet-300-100 image, dense


def epoch_flops(num_train: int) -> float:
    """Dense forward + backward FLOPs of one LeNet-300-100 epoch (backward counted as twice forward)."""
    return 3 * FORWARD_FLOPS * num_train


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

    def fresh(seed: int):
        return Ticket(mask, fresh_weights(template, seed), 0, 0).model(template)

    variants = {
        "usual DataLoader + ToTensor loop": (1, lambda r: usual_epoch(fresh(r), mask, loader)),
        "lthutils train()": (1, lambda r: train(fresh(r), mask, splits, config, data_seed=r).train_seconds),
    }
    for count in BATCHED_SIZES:
        variants[f"lthutils train_batched(), K={count}"] = (
            count,
            lambda r, count=count: (
                count
                * train_batched(
                    [fresh(r + k) for k in range(count)],
                    [mask] * count,
                    [splits] * count,
                    config,
                    list(range(r, r + count)),
                )[0].train_seconds
            ),
        )
    peak = matmul_peak_gflops()
    flops = epoch_flops(len(splits.train_labels))
    rows = {}
    for name, (count, run) in variants.items():
        with PeakMemory() as memory:
            seconds = [run(repeat) / count for repeat in range(args.repeats)]  # per model-epoch
        rows[name] = {
            "models": count,
            "seconds_per_model_epoch": statistics.median(seconds),
            "all": seconds,
            "peak_memory_mb": memory.used / 2**20,
        }
    baseline = rows["usual DataLoader + ToTensor loop"]["seconds_per_model_epoch"]
    for row in rows.values():
        row["speedup"] = baseline / row["seconds_per_model_epoch"]
        row["gflops"] = flops / row["seconds_per_model_epoch"] / 1e9
        row["fraction_of_peak"] = row["gflops"] / peak
    report = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "task": "LeNet-300-100, Fashion-MNIST 55,000 images, batch 60, Adam, 50% masks, one epoch per model",
        "matmul_peak_gflops": peak,
        "dense_gflop_per_epoch": flops / 1e9,
        "variants": rows,
    }
    print(f"matmul peak: {peak:.0f} GFLOP/s; one epoch: {flops / 1e9:.1f} GFLOP (dense, forward + backward)")
    print(f"{'variant':36} {'s/model-epoch':>14} {'speed-up':>9} {'GFLOP/s':>8} {'of peak':>8} {'peak MB':>8}")
    for name, row in rows.items():
        print(
            f"{name:36} {row['seconds_per_model_epoch']:14.3f} {row['speedup']:8.1f}x {row['gflops']:8.1f} "
            f"{row['fraction_of_peak']:8.0%} {row['peak_memory_mb']:8.0f}"
        )
    imp = ExperimentConfig(epochs=1, rounds=10, seeds=(0, 1, 2), controls=("reinit",), quiet=True).resolved()
    (old, imp_flops), new = imp_one_at_a_time(imp, prepare(imp)), imp_batched(imp)
    floor = imp_flops / (peak * 1e9)
    report["imp_10_rounds_3_seeds_ticket_reinit"] = {
        "one_at_a_time_seconds": old,
        "batched_seconds": new,
        "speedup": old / new,
        "dense_gflop": imp_flops / 1e9,
        "seconds_at_matmul_peak": floor,
        "largest_possible_speedup": old / floor,
    }
    print(
        f"IMP, 10 rounds x 3 seeds, ticket + reinit (63 trainings of one epoch): one at a time {old:.1f} s, "
        f"batched {new:.1f} s ({old / new:.2f}x); its {imp_flops / 1e9:.0f} GFLOP of training and evaluation "
        f"take {floor:.1f} s at the matmul peak, so no schedule can beat one at a time by more than {old / floor:.2f}x"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
