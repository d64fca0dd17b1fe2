"""The lthutils command line: imp, evaluate, summarize, data, run, run-all, plan, report.

A user mistake (ConfigError) prints one line on stderr and exits with code 2, before any work.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import NoReturn

from lthutils.config import DATASETS, PRECISIONS, ConfigError, ExperimentConfig, check_tracker, read_yaml
from lthutils.data import load_dataset
from lthutils.experiments import evaluate_tickets, find_tickets
from lthutils.results import RunStore

# CLI flag -> config field, for the flags whose names differ from the field's.
FLAG_FIELDS = {"rate": "prune_rate", "rate_conv": "prune_rate_conv", "rate_output": "prune_rate_output"}


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file of config fields; flags override it")
    parser.add_argument("--name", help="results folder under exp_result/")
    parser.add_argument("--model", help="a model name (the model field in docs/REFERENCE.md) or module:factory")
    parser.add_argument("--dataset", help=", ".join(DATASETS))
    parser.add_argument("--n-layers", type=int, help="hidden layers of the fc model")
    parser.add_argument("--n-neurons", type=int, help="units per hidden layer of the fc model")
    parser.add_argument("--optimizer", help="sgd or adam (default: the model's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the model's)")
    parser.add_argument("--momentum", type=float, help="SGD momentum")
    parser.add_argument("--lr-schedule", help="constant, one_cycle (torch's OneCycleLR, peak --lr), step or cosine")
    parser.add_argument("--lr-milestones", help="comma-separated fractions of a run where --lr-schedule step decays")
    parser.add_argument("--lr-gamma", type=float, help="the step schedule's factor at each milestone")
    parser.add_argument("--warmup-iterations", type=int, help="steps of linear learning-rate warmup")
    parser.add_argument("--weight-decay", type=float, help="L2 penalty of SGD and Adam (default 0)")
    parser.add_argument("--loss-reduction", help="mean (default) or sum of the batch's losses")
    parser.add_argument("--bias-init", help="zeros (default) or normal: N(0, 1)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default: the model's)")
    parser.add_argument("--augment", help="none or crop_flip (default: crop_flip on CIFAR, none otherwise)")
    parser.add_argument("--epochs", type=int, help="training epochs per round")
    parser.add_argument("--iterations", type=int, help="training steps per round (instead of epochs)")
    parser.add_argument("--rounds", type=int, help="pruning rounds after the dense round 0")
    parser.add_argument("--rate", type=float, help="fraction of fully connected weights pruned per round")
    parser.add_argument("--rate-conv", type=float, help="the same for conv layers")
    parser.add_argument("--rate-output", type=float, help="the same for the output layer (default: rate / 2)")
    parser.add_argument("--prune-scope", help="layerwise or global (default: the model's)")
    parser.add_argument(
        "--prune-output", action=argparse.BooleanOptionalAction, help="prune the output layer (default: the model's)"
    )
    parser.add_argument(
        "--reset",
        help="init, rewind or reinit (fresh weights each round); default: the model's (rewind for the CIFAR "
        "ResNets, VGGs and resnet50, init for the others)",
    )
    parser.add_argument("--rewind-iteration", type=int, help="step to rewind to (default: 1000 if the model rewinds)")
    parser.add_argument(
        "--mask-criterion", help="large_final (default), magnitude_increase, movement or large_init_large_final"
    )
    parser.add_argument(
        "--controls",
        help="comma-separated: reinit, random_mask, retrain, magnitude_init, snip, grasp, synflow (and each's "
        "_shuffle, _reinit, _invert), reshuffle, signed_constant (empty for none)",
    )
    parser.add_argument("--init-pruning-counts", help="ticket (default: its per-layer counts) or global")
    parser.add_argument("--seeds", type=int, help="number of seeds: 0 .. N-1")
    parser.add_argument("--num-train", type=int, help="class-stratified training subset size")
    parser.add_argument("--val-size", type=int, help="validation examples carved from the training pool")
    parser.add_argument("--eval-every", type=int, help="steps between evaluations")
    parser.add_argument("--precision", help="fp32, or bf16 (matrix products in bfloat16)")
    parser.add_argument("--device", help="auto, cpu, cuda or mps")
    parser.add_argument("--tracker", help="none (default), tensorboard, mlflow or wandb: where runs are also logged")
    parser.add_argument("--quiet", action="store_true", default=None, help="hide progress bars")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The config of a YAML file (if given) with the command line's flags on top."""
    values = {}
    if args.config is not None:
        values = read_yaml(args.config, "--config")
        if not isinstance(values, dict):
            raise ConfigError("--config", str(args.config), "a YAML mapping of config fields")
    for flag, value in vars(args).items():
        if flag in ("command", "config", "tickets") or value is None:
            continue
        if flag == "seeds":
            if value < 1:
                raise ConfigError("seeds", value, "a positive number of seeds")
            value = list(range(value))
        if flag == "controls":
            value = [c for c in value.split(",") if c]
        if flag == "lr_milestones":
            try:
                value = [float(m) for m in value.split(",") if m]
            except ValueError as error:
                raise ConfigError("lr_milestones", value, "comma-separated fractions such as 0.5,0.75") from error
        values[FLAG_FIELDS.get(flag, flag)] = value
    return ExperimentConfig.from_dict(values)


class _UsageError(Exception):
    """A command line argparse cannot read (an unknown flag, a flag's value of the wrong type)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse prints a usage block; we print one line (main)
        raise _UsageError(f"{message} (see: {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: every command and flag (docs/REFERENCE.md is generated from it)."""
    parser = _Parser(prog="python -m lthutils", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _config_arguments(commands.add_parser("imp", help="find tickets by iterative magnitude pruning"))
    evaluate = commands.add_parser("evaluate", help="train tickets found earlier on another setting")
    evaluate.add_argument("tickets", type=Path, help="a ticket folder under model_save/")
    _config_arguments(evaluate)
    summary = commands.add_parser("summarize", help="mean and spread over seeds of a results.csv")
    summary.add_argument("results", type=Path, help="a run folder or its results.csv")
    data = commands.add_parser("data", help="fetch datasets and show where each comes from")
    data.add_argument("names", nargs="*", default=["fashionmnist", "digits5k", "mnist"])
    run_one = commands.add_parser("run", help="execute a question's notebook with papermill from a parameter file")
    run_one.add_argument("parameter_file", type=Path, help="e.g. params/quick/q1.yaml")
    run_folder = commands.add_parser("run-all", help="execute every parameter file of a folder")
    run_folder.add_argument("folder", type=Path, help="e.g. params/quick/")
    preview = commands.add_parser("plan", help="what parameter files ask for and how long they take here")
    preview.add_argument("paths", type=Path, nargs="+", help="parameter files or folders, e.g. params/full/")
    preview.add_argument(
        "--effect",
        type=float,
        default=1.0,
        help="a true mean difference in points: the power the files' seeds give to call it better (default 1.0)",
    )
    for notebook_command in (run_one, run_folder):
        notebook_command.add_argument(
            "--output-dir", type=Path, default=Path("exp_result/notebooks"), help="where executed notebooks go"
        )
        notebook_command.add_argument(
            "--verbose", action="store_true", help="also show Dask's log lines and each notebook cell's start and end"
        )
    for notebook_command in (run_one, run_folder, preview):
        notebook_command.add_argument(
            "--scheduler",
            default="local",
            help="where the notebooks' units run: 'local' (default: a Dask LocalCluster here), 'none' (in the "
            "notebook's kernel) or a Dask scheduler's address, tcp://HOST:8786",
        )
        notebook_command.add_argument(
            "--workers", type=int, help="worker processes of --scheduler local (default: cores)"
        )
        notebook_command.add_argument(
            "--precision",
            help="every file's precision: fp32, or bf16 (matrix products in bfloat16; docs/RESULTS.md says where "
            "bf16 was measured to leave the conclusions unchanged)",
        )
        notebook_command.add_argument(
            "--tracker", help="every file's tracker: none, tensorboard, mlflow or wandb (each run also logged there)"
        )
        notebook_command.add_argument(
            "--seeds-until-decided",
            metavar="START,STEP,MAX[,SPENDING]",
            help="every file's seeds in batches until decided: START seeds, then STEP more for each setting still "
            "undecided, up to MAX (the parameter seeds: {start, step, max, spending}; spending obrien_fleming "
            "(default) or pocock)",
        )
    report = commands.add_parser("report", help="collect every results.csv into an HTML report")
    report.add_argument("--exp-root", type=Path, default=Path("exp_result"), help="the results folder")
    report.add_argument(
        "--tracker", help="also log the report (pages, verdicts, figures) to tensorboard, mlflow or wandb"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.command in ("imp", "evaluate", "summarize"):
            from lthutils.report import summarize  # seaborn and matplotlib: only once there is a table
        if args.command == "imp":
            config = config_from_args(args)
            tickets = find_tickets(config)
            results = RunStore.of(config).results_path
            print(f"tickets: {tickets}\nresults: {results}\n")
            print(summarize(results))
        elif args.command == "evaluate":
            folder = evaluate_tickets(args.tickets, config_from_args(args))
            print(f"results: {folder / 'results.csv'}\n")
            print(summarize(folder / "results.csv"))
        elif args.command in ("run", "run-all"):
            return _run_notebooks(args)
        elif args.command == "plan":
            from lthutils import cluster, runner

            cluster.check_scheduler(args.scheduler, args.workers)
            if not math.isfinite(args.effect) or args.effect == 0:
                raise ConfigError("effect", args.effect, "a non-zero finite difference in points")
            parameter_files = runner.load_all(args.paths, _overrides(args), load_data=False)  # priced, not loaded
            print(runner.preview(parameter_files, args.scheduler, args.workers))
            for parameter_file in parameter_files:
                print(f"{parameter_file.path}: " + "\n".join(runner.power_lines(parameter_file, args.effect)))
        elif args.command == "report":
            from lthutils.report import build_report  # seaborn and matplotlib: only for the report

            if args.tracker is not None:
                check_tracker(args.tracker)  # before the report's work
            page = build_report(args.exp_root)
            if args.tracker not in (None, "none"):
                from lthutils.tracking import log_report

                log_report(args.tracker, args.exp_root, page.parent)
            print(f"report: {page}")
        elif args.command == "summarize":
            path = args.results / "results.csv" if args.results.is_dir() else args.results
            print(summarize(path))
        else:
            for name in args.names:
                dataset = load_dataset(name)
                print(
                    f"{name}: {len(dataset.train_labels)} train, {len(dataset.test_labels)} test, from {dataset.source}"
                )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """Notebook parameters the command line sets for every file: --precision, --tracker, and
    --seeds-until-decided's seeds."""
    overrides = {}
    if args.tracker is not None:
        check_tracker(args.tracker)
        overrides["tracker"] = args.tracker
    if args.precision is not None:
        if args.precision not in PRECISIONS:
            raise ConfigError("--precision", args.precision, " or ".join(PRECISIONS))
        overrides["precision"] = args.precision
    if args.seeds_until_decided is None:
        return overrides
    parts = args.seeds_until_decided.split(",")
    allowed = "START,STEP,MAX or START,STEP,MAX,SPENDING, such as 5,5,30 or 5,5,30,pocock"
    if len(parts) not in (3, 4) or not all(part.strip().isdigit() for part in parts[:3]):
        raise ConfigError("--seeds-until-decided", args.seeds_until_decided, allowed)
    seeds = dict(zip(("start", "step", "max"), (int(part) for part in parts[:3])))
    return overrides | {"seeds": seeds | ({"spending": parts[3].strip()} if len(parts) == 4 else {})}


def _run_notebooks(args: argparse.Namespace) -> int:
    from lthutils import runner  # papermill: only for the notebook commands

    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # papermill: notebook stderr (and all, --verbose)
    try:  # a ConfigError reaches main's handler
        paths = [args.parameter_file] if args.command == "run" else [args.folder]
        executed = runner.run_all(paths, args.output_dir, args.scheduler, args.workers, args.verbose, _overrides(args))
    except (runner.NotebookError, OSError) as error:  # OSError: a cluster that would not start
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in executed:
        print(f"executed: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
