"""Where one training step's time goes: torch.profiler over lthutils' trainer, one model and K stacked.

LeNet-300-100 on Fashion-MNIST, batch 60, Adam, 50% masks, 300 steps after a 50-step warm-up;
prints the operators taking the most CPU time (self time, summed over the steps) and the time
per step. Complements bench/training_speed.py, which measures whole epochs.

    python bench/profile_step.py [--models 8]
"""

from __future__ import annotations

import argparse
import dataclasses

from torch.profiler import ProfilerActivity, profile
from training_speed import half_mask

from lthutils.config import ExperimentConfig
from lthutils.data import load_dataset, make_splits
from lthutils.lottery import Ticket, fresh_weights
from lthutils.models import build_model
from lthutils.training import train_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="K, the stacked models")
    parser.add_argument("--precision", default="fp32", help="fp32 or bf16")
    args = parser.parse_args()
    config = ExperimentConfig(iterations=300, eval_every=0, precision=args.precision, quiet=True).resolved()
    dataset = load_dataset("fashionmnist")
    splits = make_splits(dataset, None, None, seed=0)
    template = build_model(config, dataset.input_shape, dataset.num_classes, seed=0)
    mask = half_mask(template)
    warm_up = dataclasses.replace(config, iterations=50)
    for count in (1, args.models):

        def run(run_config, count=count):
            models = [Ticket(mask, fresh_weights(template, k), 0, 0).model(template) for k in range(count)]
            return train_models(models, [mask] * count, [splits] * count, run_config, list(range(count)))

        run(warm_up)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            results = run(config)
        per_step_ms = 1000 * results[0].train_seconds * count / config.iterations
        print(f"\n=== train_models, K={count}, {args.precision}: {per_step_ms:.2f} ms a step, {count} model(s) ===")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))


if __name__ == "__main__":
    main()
