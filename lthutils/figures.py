"""Each question's figures from its tidy rows and evidence, saved as `<question>-<plan id>_<name>`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lthutils import plots
from lthutils.analysis import Evidence, verb, with_settings_q4, with_settings_transfer
from lthutils.pipeline_cost import pipeline_costs, q4_whole


def _common_figures(
    frame: pd.DataFrame, evidence: Evidence, hue: str, panel: str | None, hue_order: list | None = None
) -> dict[str, Figure]:
    drawn = {
        "accuracy": plots.accuracy_vs_sparsity(frame, hue=hue, panel=panel, hue_order=hue_order),
        "accuracy_end": plots.accuracy_vs_sparsity(frame, hue=hue, panel=panel, hue_order=hue_order, when="test_acc"),
        "early_stop": plots.early_stop_vs_sparsity(frame, hue=hue, panel=panel, hue_order=hue_order),
    }
    if not evidence.primary.empty:
        drawn["primary"] = plots.primary_endpoints(evidence.primary, evidence.analysis.delta)
    if not evidence.levels.empty:
        drawn["differences"] = plots.paired_differences(evidence.levels, evidence.analysis.delta)
    if not evidence.overlap.empty:
        drawn["overlap"] = plots.overlap_vs_sparsity(evidence.overlap)
    return drawn


def draw_q1(frame: pd.DataFrame, evidence: Evidence) -> dict[str, Figure]:
    return _common_figures(frame, evidence, "kind", "model")


def draw_transfer(
    frame: pd.DataFrame, evidence: Evidence, axis: str, heatmap_rounds: list[int] | None = None
) -> dict[str, Figure]:
    """Q2 (axis 'dataset') and Q3 (axis 'optimizer'): curves per target, the paired differences
    and the overlap, and the mean paired ticket - reinit difference as a heatmap at
    `heatmap_rounds` (default: the middle and the last round)."""
    lines = frame.assign(
        found=f"found {verb(axis)} " + frame[f"source_{axis}"].astype(str),
        target=f"trained {verb(axis)} " + frame[axis].astype(str),
    )
    drawn = _common_figures(lines, evidence, "found", "target")
    settled = with_settings_transfer(frame, axis)[["setting", f"source_{axis}", axis]].drop_duplicates()
    cells = evidence.levels[evidence.levels["comparison"] == "ticket vs reinit"].merge(settled, on="setting")
    last = int(cells["round"].max())
    chosen = cells[cells["round"].isin(heatmap_rounds or {max(1, last // 2), last})]
    drawn["margin_heatmap"] = plots.margin_heatmap(chosen, axis, verb(axis))
    return drawn


def draw_q4(frame: pd.DataFrame, evidence: Evidence) -> dict[str, Figure]:
    settled = with_settings_q4(frame)
    trained = settled[settled["num_train"] == q4_whole(frame)]
    order = list(dict.fromkeys(sorted(trained["setting"], key=lambda s: (s.startswith("all"), s))))
    drawn = _common_figures(trained, evidence, "setting", "kind", order)  # 5 settings x 4 kinds: a panel per kind
    drawn["cost"] = plots.cost_vs_accuracy(pipeline_costs(settled))
    return drawn


def save_figures(drawn: dict[str, Figure], figures_dir: str | Path, stem: str) -> list[Path]:
    """Each figure as `<stem>_<name>`.png and .pdf under figures_dir; the PNGs' paths."""
    return [plots.save(figure, figures_dir, f"{stem}_{name}") for name, figure in drawn.items()]
