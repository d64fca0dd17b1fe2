"""Seaborn figures of tidy results (see study.tidy), saved as PNG and PDF.

Every figure is FIGURE_WIDTH inches wide with text no smaller than SMALLEST_FONT points, so the
report shows them all at one scale and a paper column (3.5 in) still prints 6-point text; panels
sit two to a row, and the legend sits above them and lists entries only (no group names).
Sparsity runs on a log axis from dense (left) to sparse (right); lines are means over seeds with a
band of one standard deviation, in seaborn's colour-blind palette. `layout_problems` names what
would not read (text overlapping text or leaving the figure, text too small, a legend over a panel).
"""

from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, NullLocator

from lthutils.config import KINDS

PALETTE = "colorblind"
FIGURE_WIDTH = 5.8  # inches: at a 3.5-inch paper column, 10-point text prints at 6 points
SMALLEST_FONT = 10  # points
PANEL_HEIGHT = 2.2  # inches per row of panels
DPI = 150  # the report shows each PNG at its own size: 870 pixels wide
WEIGHTS_LABEL = "weights remaining (%, log scale)"
WHEN = {"test_acc_at_early_stop": "at early stop", "test_acc": "at the end of training"}
BASE_MARKERS = {"ticket": "o", "reinit": "X", "random_mask": "s", "magnitude_init": "^", "retrain": "D"}
BASE_DASHES = {
    "ticket": "",
    "reinit": (4, 1.5),
    "random_mask": (1, 1),
    "magnitude_init": (3, 1.25, 1.5, 1.25),
    "retrain": (6, 2),
}
# the other controls (pruning at initialization, its ablations, mask-1 actions) cycle through these
OTHER_MARKERS = ("v", "P", "*", "<", ">", "h", "p", "d")
OTHER_DASHES = ((2, 2), (5, 1, 1, 1), (8, 2), (1, 2), (3, 3, 1, 3))
MARKERS = {kind: BASE_MARKERS.get(kind, OTHER_MARKERS[index % len(OTHER_MARKERS)]) for index, kind in enumerate(KINDS)}
DASHES = {kind: BASE_DASHES.get(kind, OTHER_DASHES[index % len(OTHER_DASHES)]) for index, kind in enumerate(KINDS)}
VERDICT_MARKERS = {"better": "^", "equivalent": "s", "worse": "v", "inconclusive": "o", "unconverged": "x"}

sns.set_theme(
    style="whitegrid",
    palette=PALETTE,
    rc={
        "font.size": 11,
        "axes.titlesize": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": SMALLEST_FONT,
        "ytick.labelsize": SMALLEST_FONT,
        "legend.fontsize": SMALLEST_FONT,
        "figure.titlesize": 11,
        "figure.labelsize": 11,
    },
)


def save(figure: plt.Figure, figures_dir: str | Path, name: str) -> Path:
    """Write `name`.png and `name`.pdf under figures_dir, close the figure, return the PNG's path.
    No tight bounding box: every figure keeps FIGURE_WIDTH, so all show at one scale."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("png", "pdf"):
        figure.savefig(figures_dir / f"{name}.{suffix}", dpi=DPI)
    plt.close(figure)
    return figures_dir / f"{name}.png"


# --- layout ----------------------------------------------------------------------------------


def _wrap(text: str, inches: float = FIGURE_WIDTH) -> str:
    """Wrap 11-point text to `inches` (a character is about half its point size wide)."""
    return textwrap.fill(text, int(inches * 72 / (0.55 * 11)))


def _panels(count: int, sharey: bool = False) -> tuple[plt.Figure, list[plt.Axes]]:
    """`count` panels two to a row on a FIGURE_WIDTH figure (_legend adds the legend's height)."""
    columns = min(count, 2)
    rows = math.ceil(count / columns)
    size = (FIGURE_WIDTH, rows * PANEL_HEIGHT + 0.5)
    figure, axes = plt.subplots(rows, columns, figsize=size, layout="constrained", squeeze=False, sharey=sharey)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return figure, list(axes.flat[:count])


def _label(figure: plt.Figure, axes: list[plt.Axes], titles: list[str] | None, xlabel: str, ylabel: str) -> None:
    """Panel titles wrapped to a panel's width, the y label on each row's first panel (a label
    centred on the figure would run into the legend above), one x label under all."""
    width = FIGURE_WIDTH / min(len(axes), 2) - 0.4
    for index, ax in enumerate(axes):
        ax.set_title(_wrap(titles[index], width) if titles and titles[index] else "")
        ax.set_xlabel("")
        ax.set_ylabel(_wrap(ylabel, PANEL_HEIGHT - 0.5) if index % 2 == 0 else "")
    figure.supxlabel(xlabel)


def _legend(figure: plt.Figure, handles: list) -> None:
    """Above the panels, in as many columns as fit the figure's width; the figure grows by its height."""
    renderer = figure.canvas.get_renderer()
    for columns in range(min(len(handles), 4), 0, -1):
        legend = figure.legend(
            handles=handles,
            loc="outside upper center",
            ncol=columns,
            frameon=False,
            handlelength=2.4,
            columnspacing=1.2,
        )
        extent = legend.get_window_extent(renderer)
        if extent.width / figure.dpi <= FIGURE_WIDTH - 0.1 or columns == 1:
            break
        legend.remove()
    figure.set_figheight(figure.get_figheight() + extent.height / figure.dpi + 0.1)


def _log_ticks(low: float, high: float, room: int) -> list[float]:
    """Round values (1, 2, 5 or 1, 3 or 1 per decade) between low and high, at most `room` of
    them; in a range too narrow for any, its middle to two digits."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for steps in ((1, 2, 5), (1, 3), (1,)):
        ticks = [round(m * 10.0**e, 10) for e in decades for m in steps if low <= m * 10.0**e <= high]
        if len(ticks) <= room:
            break
    return ticks or [float(f"{math.sqrt(low * high):.2g}")]


def _log_sparsity(ax: plt.Axes, top: float, bottom: float, room: int = 5) -> None:
    """Log scale from dense (left) to sparse (right), ticks at round percentages and at the
    sparsest level when no round tick is within half the spacing `room` ticks would have."""
    ticks = _log_ticks(bottom / 1.15, top * 1.15, room)
    if min(ticks) / bottom >= (1.15**2 * top / bottom) ** (1 / (2 * room)):
        ticks.append(bottom)
    _log_x(ax, top * 1.15, bottom / 1.15, ticks, [f"{t:.3g}" for t in ticks])


def _log_cost(ax: plt.Axes, low: float, high: float) -> None:
    """Log scale, a few round ticks written short (2k, 1.5M)."""
    ticks = _log_ticks(low, high, room=4)
    _log_x(ax, low, high, ticks, [_compact(t) for t in ticks])


def _log_x(ax: plt.Axes, left: float, right: float, ticks: list[float], labels: list[str]) -> None:
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())  # a narrow log range would label its minor ticks
    ax.set_xticklabels(labels)


def _compact(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _text_boxes(figure: plt.Figure) -> list[tuple[Text, object]]:
    """Every drawn, non-empty text of the figure with its extent in display pixels (matplotlib
    keeps, undrawn, the labels of ticks outside an axis' view)."""
    undrawn = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * (high - low)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not ax.get_visible() or not low - slack <= tick.get_loc() <= high + slack:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    renderer = figure.canvas.get_renderer()
    return [
        (text, text.get_window_extent(renderer))
        for text in figure.findobj(Text)
        if text.get_visible()
        and text.get_text().strip()
        and id(text) not in undrawn
        and (text.axes is None or text.axes.get_visible())
    ]


def layout_problems(figure: plt.Figure) -> list[str]:
    """What would not read in the saved figure: texts overlapping each other, text outside the
    figure, text below SMALLEST_FONT, a legend over a panel, a width other than FIGURE_WIDTH."""
    figure.canvas.draw()
    problems = []
    if abs(figure.get_figwidth() - FIGURE_WIDTH) > 1e-6:
        problems.append(f"figure is {figure.get_figwidth():.2f} in wide, not {FIGURE_WIDTH}")
    boxes = _text_boxes(figure)
    bounds = figure.bbox
    for text, box in boxes:
        if text.get_fontsize() < SMALLEST_FONT - 1e-6:
            problems.append(f"{text.get_text()!r} is {text.get_fontsize():g} pt, under {SMALLEST_FONT}")
        if box.x0 < bounds.x0 - 1 or box.y0 < bounds.y0 - 1 or box.x1 > bounds.x1 + 1 or box.y1 > bounds.y1 + 1:
            problems.append(f"{text.get_text()!r} leaves the figure")
    for (first, a), (second, b) in itertools.combinations(boxes, 2):
        if a.overlaps(b) and a.width > 0 and b.width > 0:
            problems.append(f"{first.get_text()!r} overlaps {second.get_text()!r}")
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    for legend in figure.findobj(Legend):
        extent = legend.get_window_extent()
        problems += [f"the legend covers a panel ({ax.get_title()!r})" for ax in panels if extent.overlaps(ax.bbox)]
    return problems


# --- lines against sparsity ------------------------------------------------------------------


def colours_for(names: list[str]) -> dict[str, str]:
    """A colour of its own for each name: the colour-blind palette's ten, or evenly spaced hues
    beyond ten (the palette repeats after ten, and Q1's 13 models would share colours)."""
    palette = PALETTE if len(names) <= 10 else "husl"
    return dict(zip(names, sns.color_palette(palette, len(names)).as_hex()))


def _by_group(column: str, names: list[str], linestyle: str = "-") -> tuple[dict, list[Line2D]]:
    """Seaborn keywords giving each of `names` (values of `column`) a colour and a marker of
    its own, and the legend's entries for them."""
    colours = colours_for(names)
    markers = dict(zip(names, itertools.cycle("oXsP^Dv*")))
    styled = dict(hue=column, hue_order=names, palette=colours, style=column, style_order=names, markers=markers)
    handles = [Line2D([], [], color=colours[n], marker=markers[n], linestyle=linestyle, label=n) for n in names]
    return styled, handles


def _kind_handle(kind: str, colour: str = "#444444") -> Line2D:
    style = {"linestyle": "-"} if DASHES[kind] == "" else {"dashes": DASHES[kind]}
    return Line2D([], [], color=colour, marker=MARKERS[kind], label=kind, **style)


def _curves(data: pd.DataFrame, y: str, ylabel: str, hue: str, hue_order: list | None, panel: str | None) -> plt.Figure:
    """Mean-and-band lines against weights remaining, one panel per value of `panel` (for "kind":
    in KINDS order, one y scale): colour by `hue`, line style and marker by kind. Diverged runs
    (their accuracies blanked by study.tidy) are counted under the figure."""
    kinds = [k for k in KINDS if k in set(data["kind"])]
    hue_order = kinds if hue == "kind" else hue_order or list(dict.fromkeys(data[hue]))  # in the data's order
    colours = colours_for(hue_order)
    if hue == "kind":
        handles = [_kind_handle(kind, colours[kind]) for kind in kinds]
    else:
        handles = [Line2D([], [], color=c, label=name) for name, c in colours.items()]
        handles += [_kind_handle(kind) for kind in kinds] if panel != "kind" else []
    panels = kinds if panel == "kind" else list(dict.fromkeys(data[panel])) if panel else [None]
    figure, axes = _panels(len(panels), sharey=panel == "kind")  # kinds of one setting: one scale
    top, bottom = data["weights_remaining_pct"].max(), data["weights_remaining_pct"].min()
    for ax, name in zip(axes, panels):
        sns.lineplot(
            data=data if panel is None else data[data[panel] == name],
            x="weights_remaining_pct",
            y=y,
            hue=hue,
            hue_order=hue_order,
            palette=colours,
            style="kind",
            style_order=kinds,
            markers={k: MARKERS[k] for k in kinds},
            dashes={k: DASHES[k] for k in kinds},
            errorbar="sd",
            legend=False,
            ax=ax,
        )
        _log_sparsity(ax, top, bottom, room=5 if len(panels) > 1 else 9)
    xlabel = WEIGHTS_LABEL
    diverged = data["diverged"].eq(True) if "diverged" in data else pd.Series(False, data.index)
    if diverged.any():
        runs = len(data[diverged].drop_duplicates(["run_id", "seed", "round", "kind"]))
        xlabel += "\n" + _wrap(f"{runs} diverged training run(s) (validation loss not finite) left out of the lines")
    _label(figure, axes, panels if panel else None, xlabel, ylabel)
    _legend(figure, handles)
    return figure


def accuracy_vs_sparsity(
    frame: pd.DataFrame,
    hue: str = "kind",
    panel: str | None = None,
    hue_order: list | None = None,
    when: str = "test_acc_at_early_stop",
) -> plt.Figure:
    """Test accuracy (%) `when` (a column of WHEN) against weights remaining; colour by `hue`,
    dashes and markers by kind, one panel per value of `panel`."""
    data = frame.assign(accuracy_pct=100 * frame[when])
    return _curves(data, "accuracy_pct", f"test accuracy {WHEN[when]} (%)", hue, hue_order, panel)


def early_stop_vs_sparsity(
    frame: pd.DataFrame, hue: str = "kind", panel: str | None = None, hue_order: list | None = None
) -> plt.Figure:
    """The early-stopping iteration against weights remaining (Frankle & Carbin, Figure 1)."""
    return _curves(frame, "early_stop_iter", "early-stopping step", hue, hue_order, panel)


def overlap_vs_sparsity(overlap: pd.DataFrame) -> plt.Figure:
    """Chance-corrected Jaccard overlap (0: independent random masks, 1: the same mask) of each
    pair of masks against weights remaining, overall and per layer; mean and sd over pairs."""
    layers = ["overall", *[name for name in dict.fromkeys(overlap["layer"]) if name != "overall"]]
    styled, handles = _by_group("pair", list(dict.fromkeys(overlap["pair"])))
    figure, axes = _panels(len(layers), sharey=True)
    top, bottom = overlap["weights_remaining_pct"].max(), overlap["weights_remaining_pct"].min()
    for ax, layer in zip(axes, layers):
        sns.lineplot(
            data=overlap[overlap["layer"] == layer],
            x="weights_remaining_pct",
            y="chance_corrected",
            **styled,
            dashes=False,
            errorbar="sd",
            legend=False,
            ax=ax,
        )
        ax.axhline(0, color="#555555", linewidth=0.8)
        _log_sparsity(ax, top, bottom, room=5 if len(layers) > 1 else 9)
    _label(figure, axes, layers, WEIGHTS_LABEL, "mask overlap beyond chance")
    _legend(figure, handles)
    return figure


# --- paired differences and verdicts --------------------------------------------------------


def primary_endpoints(primary: pd.DataFrame, delta: float) -> plt.Figure:
    """One panel per comparison: each setting's primary endpoint (mean over seeds, points) with
    its 95% t interval, the marker its verdict, the band +-delta."""
    comparisons = list(dict.fromkeys(primary["comparison"]))
    settings = list(dict.fromkeys(primary["setting"]))
    handles = [Line2D([], [], color="#333333", marker=m, linestyle="", label=v) for v, m in VERDICT_MARKERS.items()]
    handles.append(Patch(color="#dddddd", label=f"+-{delta} points"))
    figure, axes = _panels(len(comparisons), sharey=True)
    figure.set_figheight(max(figure.get_figheight(), 0.3 * len(settings) * math.ceil(len(comparisons) / 2) + 0.8))
    for ax, comparison in zip(axes, comparisons):
        rows = primary[primary["comparison"] == comparison].set_index("setting")
        ax.axvspan(-delta, delta, color="#dddddd", zorder=0)
        ax.axvline(0, color="#555555", linewidth=0.8)
        for y, setting in enumerate(settings):
            if setting not in rows.index:
                continue
            row = rows.loc[setting]
            ax.errorbar(
                row["mean"],
                y,
                xerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]] if row["n"] >= 2 else None,
                color="#333333",
                linewidth=1,
                capsize=2,
            )
            ax.scatter(row["mean"], y, marker=VERDICT_MARKERS[row["verdict"]], color="#0173b2", s=40, zorder=3)
    axes[0].set_yticks(range(len(settings)), settings)  # shared by every panel
    axes[0].set_ylim(len(settings) - 0.5, -0.5)
    for index, ax in enumerate(axes):
        ax.tick_params(axis="y", labelleft=index % 2 == 0)
    width = FIGURE_WIDTH / min(len(axes), 2) - 0.4
    for ax, comparison in zip(axes, comparisons):
        ax.set_title(_wrap(comparison, width))
    figure.supxlabel("primary endpoint: paired difference at early stop (points)")
    _legend(figure, handles)
    return figure


def paired_differences(levels: pd.DataFrame, delta: float) -> plt.Figure:
    """One panel per comparison: each setting's mean paired difference (points) at each level
    with its 95% interval simultaneous over the setting's levels, against weights remaining; the
    marker is the level's (secondary) verdict, the band +-delta."""
    verdicts = levels.assign(
        low=levels.get("simultaneous_low", levels["mean"]), high=levels.get("simultaneous_high", levels["mean"])
    )
    comparisons = list(dict.fromkeys(verdicts["comparison"]))
    settings = list(dict.fromkeys(verdicts["setting"]))
    colours = colours_for(settings)
    handles = [Line2D([], [], color=colours[s], label=s) for s in settings]
    handles += [Line2D([], [], color="#555555", marker=m, linestyle="", label=v) for v, m in VERDICT_MARKERS.items()]
    handles.append(Patch(color="#dddddd", label=f"+-{delta} points"))
    figure, axes = _panels(len(comparisons))
    top, bottom = verdicts["weights_remaining_pct"].max(), verdicts["weights_remaining_pct"].min()
    for ax, comparison in zip(axes, comparisons):
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
            )
            for verdict, marker in VERDICT_MARKERS.items():
                chosen = line["verdict"] == verdict
                ax.scatter(x[chosen], line.loc[chosen, "mean"], marker=marker, color=colours[setting], s=30, zorder=3)
        _log_sparsity(ax, top, bottom, room=5 if len(comparisons) > 1 else 9)
    _label(figure, axes, comparisons, WEIGHTS_LABEL, "paired difference at early stop (points)")
    _legend(figure, handles)
    return figure


def margin_heatmap(cells: pd.DataFrame, axis: str, verb: str) -> plt.Figure:
    """Mean paired ticket-minus-reinit difference (points) and its verdict, source x target, one
    panel per sparsity; `verb` says how a ticket relates to its axis ('on' a dataset, 'with' an optimizer)."""
    levels = sorted(cells["weights_remaining_pct"].unique(), reverse=True)
    figure, axes = _panels(len(levels))
    limit = max(abs(cells["mean"]).max(), 0.5)
    for ax, level in zip(axes, levels):
        at_level = cells[cells["weights_remaining_pct"] == level]
        table = at_level.pivot(index=f"source_{axis}", columns=axis, values="mean")
        notes = at_level.assign(note=at_level["mean"].map("{:+.2f}".format) + "\n" + at_level["verdict"])
        annotations = notes.pivot(index=f"source_{axis}", columns=axis, values="note").loc[table.index, table.columns]
        sns.heatmap(
            table,
            ax=ax,
            annot=annotations,
            annot_kws={"size": SMALLEST_FONT},
            fmt="",
            cmap="PuOr",
            vmin=-limit,
            vmax=limit,
            cbar=False,
        )
        ax.set_title(f"{level:.3g}% of weights")
        ax.set_xlabel(f"trained {verb}")
        if ax is axes[0]:  # the rows are the same in every panel: named once, written across
            ax.tick_params(axis="y", labelrotation=0)
            ax.set_ylabel(f"found {verb}")
        else:
            ax.set(yticklabels=[], ylabel="")
    figure.colorbar(
        ScalarMappable(Normalize(-limit, limit), "PuOr"),
        ax=axes,
        label="ticket - reinit (points)",
        location="bottom",
        shrink=0.6,
    )
    return figure


def cost_vs_accuracy(costs: pd.DataFrame) -> plt.Figure:
    """Q4: each pipeline's whole cost (search and final training; sample-epochs and seconds) at
    the sparsest round against the accuracy it reached on the whole set, one point per seed."""
    sparsest = costs[costs["round"] == costs["round"].max()]
    styled, handles = _by_group("pipeline", list(dict.fromkeys(sparsest["pipeline"])), linestyle="")
    figure, axes = _panels(2, sharey=True)
    level = sparsest["weights_remaining_pct"].iloc[0]
    for ax, column, label in (
        (axes[0], "sample_epochs", "cost (sample-epochs)"),
        (axes[1], "seconds", "training time (s)"),
    ):
        sns.scatterplot(
            data=sparsest,
            x=column,
            y="accuracy",
            **styled,
            s=45,
            legend=False,
            ax=ax,
        )
        _log_cost(ax, sparsest[column].min() / 1.3, sparsest[column].max() * 1.3)
        ax.set(xlabel=label + ", log scale", ylabel="")
    ylabel = f"test accuracy at early stop (%), {level:.3g}% of weights"
    axes[0].set_ylabel(_wrap(ylabel, PANEL_HEIGHT - 0.5))
    _legend(figure, handles)
    return figure
