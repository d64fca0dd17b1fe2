"""The four research questions as plans of units, and their results as one tidy table.

A question's plan turns its notebook's parameters into `Unit`s: find tickets for a config, or
train the tickets another config found. `run` does each unit (resuming whatever exists) and
`collect` reads their rows back. Notebooks, the papermill runner and the report share these
functions, so what a notebook shows and what the report shows are the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lthutils import plots
from lthutils.config import ConfigError, ExperimentConfig
from lthutils.experiments import evaluate_tickets, find_tickets, prepare


@dataclass(frozen=True)
class Unit:
    """Find tickets with `config`, or (with `source`) train the tickets `source` found on `config`."""

    config: ExperimentConfig
    source: ExperimentConfig | None = None

    @property
    def results_path(self) -> Path:
        source_id = None if self.source is None else self.source.run_id()
        return Path(self.config.exp_root) / self.config.name / self.config.run_id(source_id) / "results.csv"

    def tickets(self) -> Path:
        finder = self.source or self.config
        return Path(finder.model_root) / finder.run_id()

    def run(self) -> Path:
        if self.source is None:
            find_tickets(self.config)
        else:
            evaluate_tickets(self.tickets(), self.config)
        return self.results_path


def check(units: list[Unit]) -> None:
    """Every data-dependent check of every unit (dataset available, sizes), before any work."""
    for config in {unit.config for unit in units}:
        prepare(config)


def run(units: list[Unit]) -> pd.DataFrame:
    """Check, then run the units (finders first), and return their rows."""
    check(units)
    for unit in sorted(units, key=lambda u: u.source is not None):
        unit.run()
    return collect(units)


def collect(units: list[Unit]) -> pd.DataFrame:
    """The rows of the units' results.csv files, with source_* filled in for ticket searches."""
    return tidy(pd.concat([pd.read_csv(unit.results_path) for unit in units], ignore_index=True))


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill source_* columns of search rows with their own setting; add percent columns."""
    frame = frame.copy()
    for column in ("dataset", "optimizer", "num_train"):
        source = f"source_{column}"
        frame[source] = frame[source].fillna(frame[column]) if source in frame else frame[column]
    frame["source_num_train"] = frame["source_num_train"].astype(int)
    frame["weights_remaining_pct"] = 100 * frame["weights_remaining"]
    return frame


def _base(
    name: str,
    rounds: int,
    rate: float | None,
    epochs: int,
    seeds: list[int],
    eval_every: int,
    exp_root: str,
    model_root: str,
    quiet: bool,
    **fields,
) -> ExperimentConfig:
    return ExperimentConfig(
        name=name,
        rounds=rounds,
        prune_rate=rate,
        epochs=epochs,
        seeds=tuple(seeds),
        eval_every=eval_every,
        exp_root=exp_root,
        model_root=model_root,
        quiet=quiet,
        **fields,
    )


def parse_model(spec: str) -> dict:
    """'lenet300', 'lenet5', 'conv2' ... or 'fc:<layers>x<neurons>' (e.g. 'fc:2x100') as config fields."""
    if not isinstance(spec, str):
        raise ConfigError("models", spec, "model names such as 'lenet5' or 'fc:2x100'")
    if spec.startswith("fc:"):
        try:
            n_layers, n_neurons = (int(part) for part in spec[3:].split("x"))
        except ValueError as error:
            raise ConfigError("models", spec, "'fc:<layers>x<neurons>', e.g. 'fc:2x100'") from error
        return {"model": "fc", "n_layers": n_layers, "n_neurons": n_neurons}
    return {"model": spec}


def plan_q1(
    dataset: str,
    models: list[str],
    num_train: int | None,
    optimizer: str | None,
    lr: float | None,
    controls: list[str],
    **common,
) -> list[Unit]:
    """Q1: one ticket search per model, each with its controls."""
    if not models:
        raise ConfigError("models", models, "at least one model")
    return [
        Unit(
            _base(
                "q1",
                dataset=dataset,
                num_train=num_train,
                optimizer=optimizer,
                lr=lr,
                controls=tuple(controls),
                **parse_model(spec),
                **common,
            )
        )
        for spec in models
    ]


def _transfer_plan(name: str, axis: str, values: list, fixed: dict, **common) -> list[Unit]:
    """Search on every value of `axis`, then train each value's tickets on every other value."""
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(axis + "s", values, "at least two distinct values")
    finders = {value: _base(name, controls=("reinit",), **{axis: value}, **fixed, **common) for value in values}
    units = [Unit(config) for config in finders.values()]
    units += [
        Unit(finders[target], source=finders[source]) for source in values for target in values if source != target
    ]
    return units


def check_heatmap_rounds(heatmap_rounds: list[int], rounds: int) -> None:
    if not heatmap_rounds or any(
        isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= rounds for r in heatmap_rounds
    ):
        raise ConfigError("heatmap_rounds", heatmap_rounds, f"a non-empty list of pruned rounds, 1 to {rounds}")


def plan_q2(
    datasets: list[str],
    model: str,
    num_train: int | None,
    optimizer: str | None,
    lr: float | None,
    heatmap_rounds: list[int],
    **common,
):
    """Q2: tickets found on each dataset, trained on every other one, beside reinit there.
    (heatmap_rounds is checked here and used by the figures.)"""
    check_heatmap_rounds(heatmap_rounds, common["rounds"])
    fixed = {**parse_model(model), "num_train": num_train, "optimizer": optimizer, "lr": lr}
    return _transfer_plan("q2", "dataset", datasets, fixed, **common)


def plan_q3(
    optimizers: list[str],
    lr: float,
    momentum: float,
    dataset: str,
    model: str,
    num_train: int | None,
    heatmap_rounds: list[int],
    **common,
):
    """Q3: tickets found with each optimizer, trained with every other one, beside reinit there.
    (heatmap_rounds is checked here and used by the figures.)"""
    check_heatmap_rounds(heatmap_rounds, common["rounds"])
    fixed = {**parse_model(model), "dataset": dataset, "num_train": num_train, "lr": lr, "momentum": momentum}
    return _transfer_plan("q3", "optimizer", optimizers, fixed, **common)


def plan_q4(search_sizes: list, dataset: str, model: str, optimizer: str | None, lr: float | None, **common):
    """Q4: tickets found with each training-set size (null: all), each trained on the whole set."""
    if not search_sizes:
        raise ConfigError("search_sizes", search_sizes, "at least one training-set size")
    fixed = {**parse_model(model), "dataset": dataset, "optimizer": optimizer, "lr": lr}
    full = _base("q4", controls=("reinit",), num_train=None, **fixed, **common)
    units = [Unit(full)]
    for size in search_sizes:
        if size is not None:
            search = _base("q4", controls=(), num_train=size, **fixed, **common)
            units += [Unit(search), Unit(full, source=search)]
    return units


def pruned_margins(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group and pruned round: mean ticket and reinit accuracy at early stop and the margin (points)."""
    pruned = frame[frame["round"] > 0]
    means = pruned.pivot_table(
        index=[*by, "round", "weights_remaining_pct"], columns="kind", values="test_acc_at_early_stop", aggfunc="mean"
    )
    means = 100 * means.dropna(subset=["ticket", "reinit"])
    means["margin"] = means["ticket"] - means["reinit"]
    return means.reset_index()


def _wins(margins: pd.DataFrame) -> str:
    return f"{int((margins['margin'] > 0).sum())} of {len(margins)}"


def figures_q1(frame: pd.DataFrame, figures_dir: str | Path) -> list[Path]:
    return [
        plots.save(plots.accuracy_vs_sparsity(frame, panel="model"), figures_dir, "q1_accuracy"),
        plots.save(plots.early_stop_vs_sparsity(frame, panel="model"), figures_dir, "q1_early_stop"),
    ]


def conclude_q1(frame: pd.DataFrame) -> str:
    margins = pruned_margins(frame, ["model"])
    per_model = margins.groupby("model").agg(
        wins=("margin", lambda m: int((m > 0).sum())), levels=("margin", "size"), mean=("margin", "mean")
    )
    always = [m for m, row in per_model.iterrows() if row["wins"] == row["levels"]]
    lines = [
        f"Tickets beat the reinitialized control at {_wins(margins)} (model, pruning level) pairs, "
        f"mean margin {margins['margin'].mean():+.2f} points of test accuracy at early stop.",
        f"Tickets won at every pruning level for {len(always)} of {len(per_model)} models"
        + (f" ({', '.join(always)})." if always else "."),
    ]
    lines += [
        f"- {m}: {int(row['wins'])} of {int(row['levels'])} levels, mean margin {row['mean']:+.2f} points"
        for m, row in per_model.iterrows()
    ]
    return "\n".join(lines)


def _transfer_frames(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    verb = "on" if axis == "dataset" else "with"
    return frame.assign(
        found=f"found {verb} " + frame[f"source_{axis}"].astype(str),
        target=f"trained {verb} " + frame[axis].astype(str),
    )


def figures_transfer(
    frame: pd.DataFrame, figures_dir: str | Path, axis: str, key: str, heatmap_rounds: list[int] | None = None
) -> list[Path]:
    """Q2 (axis 'dataset') and Q3 (axis 'optimizer'): curves per target, and the margin heatmap
    at `heatmap_rounds` (default: the middle and the last round)."""
    lines = _transfer_frames(frame, axis)
    margins = pruned_margins(frame, [f"source_{axis}", axis])
    last = int(margins["round"].max())
    chosen = margins[margins["round"].isin(heatmap_rounds or {max(1, last // 2), last})]
    if chosen.empty:
        raise ConfigError("heatmap_rounds", heatmap_rounds, f"pruned rounds that were run (1 to {last})")
    return [
        plots.save(plots.accuracy_vs_sparsity(lines, hue="found", panel="target"), figures_dir, f"{key}_accuracy"),
        plots.save(plots.early_stop_vs_sparsity(lines, hue="found", panel="target"), figures_dir, f"{key}_early_stop"),
        plots.save(plots.margin_heatmap(chosen, axis), figures_dir, f"{key}_margin_heatmap"),
    ]


def conclude_transfer(frame: pd.DataFrame, axis: str) -> str:
    margins = pruned_margins(frame, [f"source_{axis}", axis])
    moved = margins[margins[f"source_{axis}"] != margins[axis]]
    own = margins[margins[f"source_{axis}"] == margins[axis]].set_index([axis, "round"])["ticket"]
    moved = moved.assign(vs_own=moved["ticket"].to_numpy() - own.loc[list(zip(moved[axis], moved["round"]))].to_numpy())
    lines = [
        f"Transferred tickets beat the reinitialized control on their target at {_wins(moved)} "
        f"(source, target, pruning level) points, mean margin {moved['margin'].mean():+.2f} points at early stop; "
        f"against the target's own tickets they differ by {moved['vs_own'].mean():+.2f} points on average.",
    ]
    for (source, target), group in moved.groupby([f"source_{axis}", axis]):
        lines.append(
            f"- {source} -> {target}: beat reinit at {_wins(group)} levels (mean {group['margin'].mean():+.2f}), "
            f"vs {target}'s own tickets {group['vs_own'].mean():+.2f} points"
        )
    return "\n".join(lines)


def search_costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Q4: per search size, what the search cost and what its tickets reached on the whole set."""
    full = int(frame["num_train"].max())
    search = frame[(frame["kind"] == "ticket") & (frame["num_train"] == frame["source_num_train"])]
    trained = frame[(frame["kind"] == "ticket") & (frame["num_train"] == full)]
    last = trained[trained["round"] == trained["round"].max()]
    costs = search.groupby(["source_num_train", "seed"]).agg(
        search_seconds=("train_seconds", "sum"), search_sample_epochs=("train_examples", "sum")
    )
    costs = costs.groupby("source_num_train").mean()
    reached = last.groupby("source_num_train")["test_acc_at_early_stop"].agg(["mean", "std"])
    costs["test accuracy (%)"] = 100 * reached["mean"]
    costs["std (points)"] = 100 * reached["std"]
    costs["weights remaining (%)"] = 100 * last["weights_remaining"].iloc[0]
    costs["compute saved vs all (%)"] = 100 * (
        1 - costs["search_sample_epochs"] / costs.loc[full, "search_sample_epochs"]
    )
    costs.index.name = "search samples"
    return costs.reset_index()


def figures_q4(frame: pd.DataFrame, figures_dir: str | Path) -> list[Path]:
    full = int(frame["num_train"].max())
    trained = frame[frame["num_train"] == full]
    sizes = sorted(trained["source_num_train"].unique())
    order = [f"found with {size:,} samples" for size in sizes]
    trained = trained.assign(found=trained["source_num_train"].map(lambda size: f"found with {size:,} samples"))
    costs = search_costs(frame).assign(**{"search samples": lambda c: c["search samples"].map("{:,}".format)})
    return [
        plots.save(plots.accuracy_vs_sparsity(trained, hue="found", hue_order=order), figures_dir, "q4_accuracy"),
        plots.save(plots.early_stop_vs_sparsity(trained, hue="found", hue_order=order), figures_dir, "q4_early_stop"),
        plots.save(plots.cost_vs_accuracy(costs), figures_dir, "q4_cost"),
    ]


def conclude_q4(frame: pd.DataFrame) -> str:
    costs = search_costs(frame)
    full = costs.iloc[-1]
    lines = [
        f"At {full['weights remaining (%)']:.3g}% of weights remaining, tickets found with all "
        f"{int(full['search samples']):,} samples reach {full['test accuracy (%)']:.2f}% when trained on the whole set."
    ]
    for _, row in costs.iloc[:-1].iterrows():
        lines.append(
            f"- found with {int(row['search samples']):,} samples: {row['test accuracy (%)']:.2f}% "
            f"({row['test accuracy (%)'] - full['test accuracy (%)']:+.2f} points) for "
            f"{row['compute saved vs all (%)']:.1f}% less search compute ({row['search_seconds']:.1f} s "
            f"vs {full['search_seconds']:.1f} s)"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Question:
    """A research question: its notebook, its plan, and what it shows (figures and conclusion)."""

    key: str
    notebook: str
    title: str
    plan: Callable[..., list[Unit]]
    figures: Callable[..., list[Path]]  # (frame, figures_dir, **display parameters)
    conclude: Callable[[pd.DataFrame], str]


QUESTIONS = {
    q.key: q
    for q in (
        Question(
            "q1",
            "q1_model_scale.ipynb",
            "Q1: do winning tickets beat reinit at every model scale?",
            plan_q1,
            figures_q1,
            conclude_q1,
        ),
        Question(
            "q2",
            "q2_dataset_transfer.ipynb",
            "Q2: do tickets found on one dataset work on another?",
            plan_q2,
            functools.partial(figures_transfer, axis="dataset", key="q2"),
            functools.partial(conclude_transfer, axis="dataset"),
        ),
        Question(
            "q3",
            "q3_optimizer_transfer.ipynb",
            "Q3: do tickets found with one optimizer work with another?",
            plan_q3,
            functools.partial(figures_transfer, axis="optimizer", key="q3"),
            functools.partial(conclude_transfer, axis="optimizer"),
        ),
        Question(
            "q4",
            "q4_few_sample.ipynb",
            "Q4: do tickets found with few samples work on the whole training set?",
            plan_q4,
            figures_q4,
            conclude_q4,
        ),
    )
}
