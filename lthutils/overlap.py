"""Mask overlap: how alike the tickets of a plan are, chance-corrected (stats.mask_overlap), with
the magnitude-at-init mask of their counts, across seeds, and across the searches a question pairs."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from lthutils import stats
from lthutils.lottery import Ticket
from lthutils.pruning import Mask, magnitude_mask


def _overlap_rows(
    pair: str, setting: str, seed: int, round_index: int, pct: float, first: Mask, second: Mask
) -> pd.DataFrame:
    table = stats.mask_overlap(first, second)
    return table.assign(pair=pair, setting=setting, seed=seed, round=round_index, weights_remaining_pct=pct)


def _searches(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per search run, seed and pruned round, with its setting and ticket folder."""
    rows = frame[~frame["transfer"] & (frame["kind"] == "ticket") & (frame["round"] > 0)]
    return rows[["run_id", "setting", "seed", "round", "weights_remaining_pct", "tickets"]].drop_duplicates()


def overlaps(frame: pd.DataFrame, cross: Callable[[pd.DataFrame], Iterator[tuple[str, str, str, str]]]) -> pd.DataFrame:
    """Chance-corrected overlap (stats.mask_overlap) per layer and overall of every pruned ticket
    with the magnitude-at-init mask of its counts, between the seeds of each search, and between
    the searches `cross(searches)` names as (pair, setting, run id, other run id), same seed and
    round (same theta_0). Empty when the frame names no ticket folders (plans recorded before)."""
    if "tickets" not in frame or frame["tickets"].isna().all():
        return pd.DataFrame()
    searches = _searches(frame)
    _ticket = functools.cache(
        lambda tickets, seed, round_index: Ticket.load(Path(tickets) / f"seed{seed}" / f"round{round_index}.pt")
    )
    parts = []
    for row in searches.itertuples():
        ticket = _ticket(row.tickets, row.seed, row.round)
        init = magnitude_mask(ticket.mask, ticket.weights)
        parts.append(
            _overlap_rows(
                f"ticket of {row.setting} vs magnitude at init",
                row.setting,
                row.seed,
                row.round,
                row.weights_remaining_pct,
                ticket.mask,
                init,
            )
        )
    for (_, setting, round_index), rows in searches.groupby(["run_id", "setting", "round"]):
        for a, b in itertools.combinations(rows.itertuples(), 2):
            first, second = _ticket(a.tickets, a.seed, round_index), _ticket(b.tickets, b.seed, round_index)
            parts.append(
                _overlap_rows(
                    "across seeds", setting, a.seed, round_index, a.weights_remaining_pct, first.mask, second.mask
                )
            )
    for pair, setting, run_id, other in cross(searches):
        mine, theirs = searches[searches["run_id"] == run_id], searches[searches["run_id"] == other]
        for a in mine.merge(theirs, on=["seed", "round"], suffixes=("", "_other")).itertuples():
            first, second = _ticket(a.tickets, a.seed, a.round), _ticket(a.tickets_other, a.seed, a.round)
            parts.append(
                _overlap_rows(pair, setting, a.seed, a.round, a.weights_remaining_pct, first.mask, second.mask)
            )
    return pd.concat(parts, ignore_index=True)


def overlap_sentence(overlap: pd.DataFrame) -> str:
    """The overall chance-corrected overlap of each pair at the sparsest level."""
    if overlap.empty:
        return "Mask overlap: not measured (this plan's ticket folders were not recorded)."
    overall = overlap[overlap["layer"] == "overall"]
    sparsest = overall[overall["weights_remaining_pct"] == overall["weights_remaining_pct"].min()]
    parts = [
        f"{pair} {group['chance_corrected'].mean():.2f} (range {group['chance_corrected'].min():.2f} to "
        f"{group['chance_corrected'].max():.2f})"
        for pair, group in sparsest.groupby("pair", sort=False)
    ]
    return (
        f"Mask overlap (Jaccard, chance-corrected: 0 = independent random masks of the same per-layer counts, "
        f"1 = the same mask) at {sparsest['weights_remaining_pct'].iloc[0]:.3g}% of weights remaining: "
        + "; ".join(parts)
        + "."
    )
