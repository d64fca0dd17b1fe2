"""What the study's results say: margins, conclusions and each question's figures.

Functions take the tidy results of one plan (study.collect) and return numbers, sentences or
figure paths. Figure files are named `<question>-<plan id>_<figure>`, the plan id being a hash of
the runs in the frame, so two parameter sets of one question never overwrite each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from lthutils import plots


def verb(axis: str) -> str:
    """'on' a dataset, 'with' an optimizer."""
    return "on" if axis == "dataset" else "with"


def plan_id(frame: pd.DataFrame) -> str:
    """A short hash of the runs behind a frame: the same plan, the same id."""
    return hashlib.sha256(" ".join(sorted(frame["run_id"].unique())).encode()).hexdigest()[:8]


def _stem(frame: pd.DataFrame, key: str) -> str:
    return f"{key}-{plan_id(frame)}"


def pruned_margins(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group and pruned round: mean ticket and reinit accuracy at early stop and the margin (points)."""
    pruned = frame[frame["round"] > 0]
    means = pruned.pivot_table(
        index=[*by, "round", "weights_remaining_pct"], columns="kind", values="test_acc_at_early_stop", aggfunc="mean"
    )
    means = means.reindex(columns=means.columns.union(["ticket", "reinit"]))  # a kind whose every run diverged
    means = 100 * means.dropna(subset=["ticket", "reinit"])
    means["margin"] = means["ticket"] - means["reinit"]
    return means.reset_index()


def _wins(margins: pd.DataFrame) -> str:
    return f"{int((margins['margin'] > 0).sum())} of {len(margins)}"


def figures_q1(frame: pd.DataFrame, figures_dir: str | Path) -> list[Path]:
    return [
        plots.save(plots.accuracy_vs_sparsity(frame, panel="model"), figures_dir, f"{_stem(frame, 'q1')}_accuracy"),
        plots.save(plots.early_stop_vs_sparsity(frame, panel="model"), figures_dir, f"{_stem(frame, 'q1')}_early_stop"),
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
    return frame.assign(
        found=f"found {verb(axis)} " + frame[f"source_{axis}"].astype(str),
        target=f"trained {verb(axis)} " + frame[axis].astype(str),
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
    stem = _stem(frame, key)
    return [
        plots.save(plots.accuracy_vs_sparsity(lines, hue="found", panel="target"), figures_dir, f"{stem}_accuracy"),
        plots.save(plots.early_stop_vs_sparsity(lines, hue="found", panel="target"), figures_dir, f"{stem}_early_stop"),
        plots.save(plots.margin_heatmap(chosen, axis, verb(axis)), figures_dir, f"{stem}_margin_heatmap"),
    ]


def conclude_transfer(frame: pd.DataFrame, axis: str) -> str:
    margins = pruned_margins(frame, [f"source_{axis}", axis])
    own = margins[margins[f"source_{axis}"] == margins[axis]][[axis, "round", "ticket"]].rename(
        columns={"ticket": "own"}
    )
    moved = margins[margins[f"source_{axis}"] != margins[axis]].merge(own, on=[axis, "round"])
    moved["vs_own"] = moved["ticket"] - moved["own"]
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


ACCURACY = "test accuracy at early stop (%)"


def search_costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Q4: per search size (mean over seeds), what the search's ticket trunk cost (training
    seconds without evaluation, sample-epochs = training examples processed) and the test accuracy
    at early stop its tickets reached at the last round when trained on the whole set."""
    full = int(frame["num_train"].max())
    tickets = frame[frame["kind"] == "ticket"]
    search = tickets[~tickets["transfer"]]
    trained = tickets[tickets["num_train"] == full]
    last = trained[trained["round"] == trained["round"].max()]
    costs = search.groupby(["source_num_train", "seed"]).agg(
        search_seconds=("train_seconds", "sum"), search_sample_epochs=("train_examples", "sum")
    )
    costs = costs.groupby("source_num_train").mean()
    reached = last.groupby("source_num_train")["test_acc_at_early_stop"].agg(["mean", "std"])
    costs[ACCURACY] = 100 * reached["mean"]
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
    stem = _stem(frame, "q4")
    return [
        plots.save(plots.accuracy_vs_sparsity(trained, hue="found", hue_order=order), figures_dir, f"{stem}_accuracy"),
        plots.save(
            plots.early_stop_vs_sparsity(trained, hue="found", hue_order=order), figures_dir, f"{stem}_early_stop"
        ),
        plots.save(plots.cost_vs_accuracy(costs, ACCURACY), figures_dir, f"{stem}_cost"),
    ]


def conclude_q4(frame: pd.DataFrame) -> str:
    costs = search_costs(frame)
    full = costs.iloc[-1]
    lines = [
        f"At {full['weights remaining (%)']:.3g}% of weights remaining, tickets found with all "
        f"{int(full['search samples']):,} samples reach {full[ACCURACY]:.2f}% (at early stop) when trained on the "
        "whole set."
    ]
    for _, row in costs.iloc[:-1].iterrows():
        lines.append(
            f"- found with {int(row['search samples']):,} samples: {row[ACCURACY]:.2f}% "
            f"({row[ACCURACY] - full[ACCURACY]:+.2f} points) for "
            f"{row['compute saved vs all (%)']:.1f}% less search compute ({row['search_seconds']:.1f} s "
            f"vs {full['search_seconds']:.1f} s)"
        )
    return "\n".join(lines)
