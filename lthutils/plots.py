"""Seaborn figures of tidy results (see study.tidy), saved as PNG and PDF.

Every figure plots percent of weights remaining on a log axis running from dense (left) to
sparse (right), shows the mean over seeds with a band of one standard deviation, and uses
seaborn's colour-blind palette.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from lthutils.config import KINDS

PALETTE = "colorblind"
WEIGHTS_LABEL = "weights remaining (%, log scale)"
WHEN = {"test_acc_at_early_stop": "at early stop", "test_acc": "at end of training"}
NICE_TICKS = (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1)

sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)


def save(figure: plt.Figure, figures_dir: str | Path, name: str) -> Path:
    """Write `name`.png and `name`.pdf under figures_dir, close the figure, return the PNG's path."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        figure.savefig(figures_dir / f"{name}.{suffix}", dpi=130, bbox_inches="tight")
    plt.close(figure)
    return figures_dir / f"{name}.png"


def _sparsity_axis(grid: sns.FacetGrid, frame: pd.DataFrame) -> None:
    """Log scale from dense (left) to sparse (right), ticks at round percentages."""
    for ax in grid.axes.flat:
        _log_sparsity(ax, frame["weights_remaining_pct"].max(), frame["weights_remaining_pct"].min())


def _log_sparsity(ax: plt.Axes, top: float, bottom: float) -> None:
    ticks = [t for t in NICE_TICKS if bottom / 1.15 <= t <= top * 1.15] or [round(top, 1)]
    if bottom < min(ticks) / 1.2:
        ticks.append(round(bottom, 1))
    ax.set_xscale("log")
    ax.set_xlim(top * 1.15, bottom / 1.15)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])


def _curves(data: pd.DataFrame, y: str, hue: str, hue_order: list | None, **facets) -> sns.FacetGrid:
    """Mean-and-band lines against weights remaining: colour by `hue`, line style by kind.
    Diverged runs (their accuracies blanked by study.tidy) are counted under the figure."""
    kinds = [k for k in KINDS if k in set(data["kind"])]
    diverged = data["diverged"].eq(True) if "diverged" in data else pd.Series(False, data.index)
    grid = sns.relplot(
        data=data,
        x="weights_remaining_pct",
        y=y,
        hue=hue,
        hue_order=hue_order,
        style="kind",
        style_order=kinds,
        kind="line",
        markers=True,
        errorbar="sd",
        palette=PALETTE,
        **facets,
    )
    _sparsity_axis(grid, data)
    grid.legend.set_title(None)
    if diverged.any():
        runs = len(data[diverged].drop_duplicates(["run_id", "seed", "round", "kind"]))
        text = f"{runs} diverged training run(s) (validation loss not finite) left out of the lines"
        grid.figure.text(0.5, 0, text, ha="center", va="top", color="#d55e00")
    return grid


def accuracy_vs_sparsity(
    frame: pd.DataFrame, hue: str = "kind", panel: str | None = None, hue_order: list | None = None
) -> plt.Figure:
    """Test accuracy (%) at early stop and at the end of training; colour by `hue`, dashes by kind.

    With up to three panels, early stop is the top row and the end the bottom row; with more,
    each panel is a row and the two moments are the columns, so the figure stays readable.
    """
    many = panel is not None and frame[panel].nunique() > 3
    panels = sorted(frame[panel].unique()) if panel else None
    long = frame.melt(
        id_vars=[c for c in frame.columns if c not in WHEN], value_vars=list(WHEN), var_name="when", value_name="acc"
    )
    long["when"] = long["when"].map(WHEN)
    long["test accuracy (%)"] = 100 * long["acc"]
    grid = _curves(
        long,
        "test accuracy (%)",
        hue,
        hue_order,
        row=panel if many else "when",
        col="when" if many else panel,
        row_order=panels if many else list(WHEN.values()),
        col_order=list(WHEN.values()) if many else panels,
        height=2.6 if many else 3.2,
        aspect=1.6 if many or panel is None else 1.3,
        facet_kws={"sharey": "row" if many else False, "margin_titles": True},
    )
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.set_axis_labels(WEIGHTS_LABEL, "test accuracy (%)")
    return grid.figure


def early_stop_vs_sparsity(
    frame: pd.DataFrame, hue: str = "kind", panel: str | None = None, hue_order: list | None = None
) -> plt.Figure:
    """The early-stopping iteration against weights remaining (Frankle & Carbin, Figure 1)."""
    grid = _curves(
        frame,
        "early_stop_iter",
        hue,
        hue_order,
        col=panel,
        col_order=sorted(frame[panel].unique()) if panel else None,
        col_wrap=3 if panel and frame[panel].nunique() > 3 else None,
        height=3.2,
        aspect=1.3 if panel else 1.6,
    )
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels(WEIGHTS_LABEL, "early-stopping iteration (steps)")
    return grid.figure


def margin_heatmap(cells: pd.DataFrame, axis: str, verb: str) -> plt.Figure:
    """Mean paired ticket-minus-reinit difference (points) and its verdict, source x target, one
    panel per sparsity; `verb` says how a ticket relates to its axis ('on' a dataset, 'with' an optimizer)."""
    levels = sorted(cells["weights_remaining_pct"].unique(), reverse=True)
    figure, axes = plt.subplots(1, len(levels), figsize=(3.8 * len(levels) + 1.2, 3.4), squeeze=False)
    limit = max(abs(cells["mean"]).max(), 0.5)
    for ax, level in zip(axes[0], levels):
        at_level = cells[cells["weights_remaining_pct"] == level]
        table = at_level.pivot(index=f"source_{axis}", columns=axis, values="mean")
        notes = at_level.assign(note=at_level["mean"].map("{:+.2f}".format) + "\n" + at_level["verdict"])
        annotations = notes.pivot(index=f"source_{axis}", columns=axis, values="note").loc[table.index, table.columns]
        sns.heatmap(
            table,
            ax=ax,
            annot=annotations,
            annot_kws={"size": 9},
            fmt="",
            cmap="PuOr",
            vmin=-limit,
            vmax=limit,
            cbar=ax is axes[0][-1],
        )
        ax.set_title(f"{level:.3g}% of weights remaining")
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_xlabel(f"target {axis} (trained {verb})")
        ax.set_ylabel(f"source {axis} (tickets found {verb})" if ax is axes[0][0] else "")
    figure.suptitle("ticket minus reinit test accuracy at early stop (mean paired difference, points) and verdict")
    figure.tight_layout()
    return figure


VERDICT_MARKERS = {"better": "^", "equivalent": "s", "worse": "v", "inconclusive": "o", "unconverged": "x"}


def paired_differences(verdicts: pd.DataFrame, delta: float) -> plt.Figure:
    """One panel per comparison: each setting's mean paired difference (points) with its 95%
    t interval against weights remaining; the marker is the cell's verdict, the band +-delta."""
    comparisons = list(dict.fromkeys(verdicts["comparison"]))
    settings = list(dict.fromkeys(verdicts["setting"]))
    colours = dict(zip(settings, sns.color_palette(PALETTE, len(settings))))
    columns = min(len(comparisons), 2)
    rows = -(-len(comparisons) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 3.6 * rows), squeeze=False)
    top, bottom = verdicts["weights_remaining_pct"].max(), verdicts["weights_remaining_pct"].min()
    for ax, comparison in zip(axes.flat, comparisons):
        cells = verdicts[verdicts["comparison"] == comparison]
        ax.axhspan(-delta, delta, color="#dddddd", zorder=0)
        ax.axhline(0, color="#555555", linewidth=0.8)
        for index, setting in enumerate(settings):
            line = cells[cells["setting"] == setting].sort_values("weights_remaining_pct", ascending=False)
            if line.empty:
                continue
            x = line["weights_remaining_pct"] * 1.025 ** (index - (len(settings) - 1) / 2)  # side by side
            ax.errorbar(
                x,
                line["mean"],
                yerr=[line["mean"] - line["low"], line["high"] - line["mean"]],
                color=colours[setting],
                linewidth=1,
                capsize=2,
                label=setting,
            )
            for verdict, marker in VERDICT_MARKERS.items():
                chosen = line["verdict"] == verdict
                ax.scatter(x[chosen], line.loc[chosen, "mean"], marker=marker, color=colours[setting], s=36, zorder=3)
        _log_sparsity(ax, top, bottom)
        ax.set_title(comparison)
        ax.set_xlabel(WEIGHTS_LABEL)
        ax.set_ylabel("difference (points, 95% CI)")
    for ax in axes.flat[len(comparisons) :]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colours[s], marker="o", linestyle="-", label=s) for s in settings] + [
        plt.Line2D([], [], color="#555555", marker=m, linestyle="", label=v) for v, m in VERDICT_MARKERS.items()
    ]
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=4, frameon=False)
    figure.suptitle(f"paired test-accuracy difference at early stop, per cell; grey band: +-{delta} points")
    figure.tight_layout()
    return figure


def overlap_vs_sparsity(overlap: pd.DataFrame) -> plt.Figure:
    """Chance-corrected Jaccard overlap (0: independent random masks, 1: the same mask) of each
    pair of masks against weights remaining, overall and per layer; mean and sd over pairs."""
    layers = ["overall", *[name for name in dict.fromkeys(overlap["layer"]) if name != "overall"]]
    grid = sns.relplot(
        data=overlap,
        x="weights_remaining_pct",
        y="chance_corrected",
        hue="pair",
        col="layer",
        col_order=layers,
        col_wrap=min(len(layers), 4),
        kind="line",
        markers=True,
        style="pair",
        errorbar="sd",
        palette=PALETTE,
        height=3.0,
        aspect=1.1,
    )
    _sparsity_axis(grid, overlap)
    for ax in grid.axes.flat:
        ax.axhline(0, color="#555555", linewidth=0.8)
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels(WEIGHTS_LABEL, "overlap beyond chance")
    grid.legend.set_title(None)
    return grid.figure


def cost_vs_accuracy(costs: pd.DataFrame) -> plt.Figure:
    """Q4: each pipeline's whole cost (search and final training; sample-epochs and seconds) at
    the sparsest round against the accuracy it reached on the whole set, one point per seed."""
    sparsest = costs[costs["round"] == costs["round"].max()]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, column, label in (
        (axes[0], "sample_epochs", "pipeline cost (sample-epochs of the whole set, log scale)"),
        (axes[1], "seconds", "pipeline training time (s, log scale)"),
    ):
        sns.scatterplot(
            data=sparsest, x=column, y="accuracy", hue="pipeline", style="pipeline", s=60, palette=PALETTE, ax=ax
        )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy at early stop (%)")
    axes[0].get_legend().remove()
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1, 1), title=None)
    level = sparsest["weights_remaining_pct"].iloc[0]
    figure.suptitle(f"what each pipeline cost vs what it reached on the whole set ({level:.3g}% of weights remaining)")
    figure.tight_layout()
    return figure
