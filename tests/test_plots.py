"""Figures read at a glance: the layout check finds what would not, and the axes we draw pass it.
Every figure type drawn from real runs is checked in tests/test_notebooks.py."""

import matplotlib.pyplot as plt
import pytest
import seaborn as sns
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lthutils import plots


def _two_panels() -> tuple[plt.Figure, list[plt.Axes]]:
    return plots._panels(2)


def test_the_check_finds_tick_labels_run_together():
    """The cost figure's right panel before this check: ticks at 1, 2 and 5 per decade on a
    half-width panel printed '500 10002000 5000 1000020000'."""
    figure, axes = _two_panels()
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlim(300, 40000)
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    problems = plots.layout_problems(figure)
    assert any(problem.endswith("overlaps '2000'") for problem in problems), problems
    plt.close(figure)


def test_the_check_finds_text_outside_small_text_and_a_legend_over_a_panel():
    figure, axes = _two_panels()
    axes[0].plot([1, 2], [1, 2], label="a line")
    axes[0].legend(loc="center")
    figure.text(0.98, 0.5, "a caption that runs off the right edge")
    axes[1].set_title("small", fontsize=7)
    problems = plots.layout_problems(figure)
    assert "'a caption that runs off the right edge' leaves the figure" in problems
    assert "'small' is 7 pt, under 10" in problems
    assert "the legend covers a panel ('')" in problems
    plt.close(figure)


@pytest.mark.parametrize("bottom", [13.3, 10.7, 3.5, 0.9, 0.1, 0.012])
@pytest.mark.parametrize("panels", [1, 2])
def test_sparsity_ticks_read_at_every_depth(bottom, panels):
    figure, axes = plots._panels(panels)
    for ax in axes:
        ax.plot([100, bottom], [0, 1])
        plots._log_sparsity(ax, 100, bottom, room=5 if panels > 1 else 9)
    assert plots.layout_problems(figure) == []
    labels = [label.get_text() for label in axes[0].get_xticklabels()]
    assert "100" in labels and len(labels) >= 3, labels
    plt.close(figure)


@pytest.mark.parametrize(("low", "high"), [(0.4, 30), (300, 40000), (900, 5e6), (2.1, 2.9)])
def test_cost_ticks_read_on_a_half_width_panel(low, high):
    figure, axes = _two_panels()
    for ax in axes:
        ax.plot([low, high], [0, 1])
        plots._log_cost(ax, low, high)
    assert plots.layout_problems(figure) == []
    assert 1 <= len(axes[1].get_xticklabels()) <= 4
    plt.close(figure)


def test_compact_numbers():
    assert [plots._compact(v) for v in (0.5, 500, 2000, 20000, 1.5e6, 3e9)] == ["0.5", "500", "2k", "20k", "1.5M", "3G"]


def test_every_setting_gets_a_colour_of_its_own():
    """Q1's 13 models: the colour-blind palette has ten colours and would repeat them."""
    for count in (3, 10, 13, 26):
        names = [f"fc{i}" for i in range(count)]
        assert len(set(plots.colours_for(names).values())) == count
    assert list(plots.colours_for(["a", "b"]).values()) == sns.color_palette(plots.PALETTE, 2).as_hex()
