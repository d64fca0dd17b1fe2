"""Q4's savings: what the whole pipeline (the search up to a ticket, then its training on the
whole set) costs per setting, in sample-epochs, dense FLOPs and seconds, beside its accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lthutils.rule import METRIC


def q4_whole(frame: pd.DataFrame) -> int:
    return int(frame["num_train"].max())


def pipeline_costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Q4 (frame with settings): per setting, pruned round and seed, the cost of the whole
    pipeline that yields a network trained on the whole set at that sparsity: the search's ticket
    trunk up to that round's ticket (rounds before it) plus the final training. Baselines
    (magnitude_init, random_mask) search nothing. Examples (sample-epochs: / whole set), dense
    FLOPs and training seconds (evaluation excluded), with the final accuracy (%)."""
    whole = q4_whole(frame)
    searches = frame[~frame["transfer"] & (frame["kind"] == "ticket")]
    trunk = searches.sort_values("round").groupby(["run_id", "seed"])[
        ["train_examples", "train_dense_flops", "train_seconds"]
    ]
    before = trunk.cumsum() - searches.sort_values("round")[["train_examples", "train_dense_flops", "train_seconds"]]
    searched = searches.sort_values("round")[["run_id", "seed", "round"]].join(before)
    finals = frame[(frame["num_train"] == whole) & (frame["round"] > 0)]
    finals = finals[
        (finals["kind"] == "ticket") | finals["kind"].isin(["magnitude_init", "random_mask"]) & ~finals["transfer"]
    ]
    finals = finals.assign(
        finder=finals["source_run_id"].fillna(finals["run_id"]) if "source_run_id" in finals else finals["run_id"]
    )
    merged = finals.merge(
        searched,
        left_on=["finder", "seed", "round"],
        right_on=["run_id", "seed", "round"],
        how="left",
        suffixes=("", "_search"),
    )
    baseline = merged["kind"] != "ticket"
    for column in ("train_examples", "train_dense_flops", "train_seconds"):
        search = merged[f"{column}_search"].where(~baseline, 0.0)
        merged[f"total_{column}"] = search + merged[column]
    merged["pipeline"] = np.where(baseline, merged["kind"], merged["setting"])
    return pd.DataFrame(
        {
            "pipeline": merged["pipeline"],
            "seed": merged["seed"],
            "round": merged["round"],
            "weights_remaining_pct": merged["weights_remaining_pct"],
            "sample_epochs": merged["total_train_examples"] / whole,
            "dense_flops": merged["total_train_dense_flops"],
            "seconds": merged["total_train_seconds"],
            "accuracy": 100 * merged[METRIC],
        }
    )


def cost_table(costs: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of each pipeline's cost and accuracy at the sparsest round."""
    sparsest = costs[costs["round"] == costs["round"].max()]
    table = sparsest.groupby("pipeline", sort=False)[["sample_epochs", "dense_flops", "seconds", "accuracy"]].mean()
    table["accuracy sd"] = sparsest.groupby("pipeline", sort=False)["accuracy"].std()
    return table.sort_values("sample_epochs")


def cost_sentences(costs: pd.DataFrame) -> list[str]:
    if costs.empty:
        return []
    table = cost_table(costs)
    level = costs.loc[costs["round"] == costs["round"].max(), "weights_remaining_pct"].iloc[0]
    full = table.loc[[name for name in table.index if name.startswith("all")][0]]
    lines = [
        f"**Pipeline cost** (search up to the ticket plus its training on the whole set; mean over seeds) "
        f"at {level:.3g}% of weights remaining:"
    ]
    for name, row in table.iterrows():
        lines.append(
            f"- {name}: {row['sample_epochs']:.1f} sample-epochs "
            f"({100 * row['sample_epochs'] / full['sample_epochs']:.0f}% of the all-sample pipeline), "
            f"{row['dense_flops']:.3g} dense FLOPs, {row['seconds']:.1f} s; "
            f"accuracy {row['accuracy']:.2f}% (sd {row['accuracy sd']:.2f})"
        )
    return lines
