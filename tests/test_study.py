import pandas as pd
import pytest

from lthutils import study
from lthutils.config import ConfigError

COMMON = dict(rounds=2, rate=None, epochs=1, seeds=[0], eval_every=5, exp_root="/e", model_root="/m", quiet=True)


def test_q1_plans_one_search_per_model():
    units = study.plan_q1("fashionmnist", ["fc:3x50", "lenet5"], 500, None, None, ["reinit"], **COMMON)
    assert [(u.config.architecture, u.source) for u in units] == [("fc3x50", None), ("lenet5", None)]
    assert all(u.config.name == "q1" and u.config.controls == ("reinit",) for u in units)


def test_transfer_plans_search_everywhere_then_cross():
    units = study.plan_q2(["fashionmnist", "digits5k"], "lenet300", 300, None, None, [1], **COMMON)
    searches = [u.config.dataset for u in units if u.source is None]
    crosses = [(u.source.dataset, u.config.dataset) for u in units if u.source is not None]
    assert searches == ["fashionmnist", "digits5k"]
    assert crosses == [("fashionmnist", "digits5k"), ("digits5k", "fashionmnist")]
    assert units[2].tickets() == units[0].tickets()  # the cross trains the search's own tickets
    units = study.plan_q3(["sgd", "adam"], 0.01, 0.9, "fashionmnist", "lenet300", 300, [2], **COMMON)
    assert [(u.source.optimizer, u.config.optimizer) for u in units if u.source] == [("sgd", "adam"), ("adam", "sgd")]
    with pytest.raises(ConfigError, match="heatmap_rounds=\\[3\\]"):
        study.plan_q3(["sgd", "adam"], 0.01, 0.9, "fashionmnist", "lenet300", 300, [3], **COMMON)


def test_q4_plans_subset_searches_trained_on_the_whole_set():
    units = study.plan_q4([100, 1000], "fashionmnist", "lenet300", None, None, **COMMON)
    full = units[0].config
    assert full.num_train is None and full.controls == ("reinit",)
    assert [(u.source.num_train, u.config is full) for u in units if u.source] == [(100, True), (1000, True)]
    assert [u.config.num_train for u in units if u.source is None] == [None, 100, 1000]


def test_parse_model():
    assert study.parse_model("fc:2x300") == {"model": "fc", "n_layers": 2, "n_neurons": 300}
    assert study.parse_model("conv4") == {"model": "conv4"}
    with pytest.raises(ConfigError, match="models='fc:2'"):
        study.parse_model("fc:2")


def _rows(model, ticket, reinit):
    """Rows of one seed: round 0 and two pruned rounds with the given accuracies."""
    rows = [
        {"model": model, "round": 0, "kind": "ticket", "weights_remaining_pct": 100.0, "test_acc_at_early_stop": 0.8}
    ]
    for round_index, (t, r) in enumerate(zip(ticket, reinit), start=1):
        pct = 100 * 0.8**round_index
        rows += [
            {
                "model": model,
                "round": round_index,
                "kind": "ticket",
                "weights_remaining_pct": pct,
                "test_acc_at_early_stop": t,
            },
            {
                "model": model,
                "round": round_index,
                "kind": "reinit",
                "weights_remaining_pct": pct,
                "test_acc_at_early_stop": r,
            },
        ]
    return rows


def test_q1_conclusion_counts_wins_and_margins():
    frame = pd.DataFrame(_rows("a", [0.82, 0.84], [0.80, 0.80]) + _rows("b", [0.70, 0.75], [0.72, 0.70]))
    lines = study.conclude_q1(frame).splitlines()
    assert lines[0].startswith("Tickets beat the reinitialized control at 3 of 4 (model, pruning level) pairs")
    assert "mean margin +2.25 points" in lines[0]
    assert lines[1] == "Tickets won at every pruning level for 1 of 2 models (a)."
    assert lines[2:] == ["- a: 2 of 2 levels, mean margin +3.00 points", "- b: 1 of 2 levels, mean margin +1.50 points"]
