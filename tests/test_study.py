import pandas as pd
import pytest

from lthutils import analysis, study
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
    lines = analysis.conclude_q1(frame).splitlines()
    assert lines[0].startswith("Tickets beat the reinitialized control at 3 of 4 (model, pruning level) pairs")
    assert "mean margin +2.25 points" in lines[0]
    assert lines[1] == "Tickets won at every pruning level for 1 of 2 models (a)."
    assert lines[2:] == ["- a: 2 of 2 levels, mean margin +3.00 points", "- b: 1 of 2 levels, mean margin +1.50 points"]


def _row(**values):
    base = {"seed": 0, "kind": "ticket", "train_seconds": 1.0, "train_examples": 100, "weights_remaining": 0.8}
    return {**base, **values}


def test_tidy_marks_transfers_and_fills_sources():
    frame = pd.DataFrame(
        [
            _row(run_id="a", round=0, dataset="x", optimizer="sgd", num_train=10, source_run_id=None),
            _row(
                run_id="b",
                round=0,
                dataset="y",
                optimizer="sgd",
                num_train=20,
                source_run_id="a",
                source_dataset="x",
                source_optimizer="sgd",
                source_num_train=10,
            ),
        ]
    )
    tidy = study.tidy(frame)
    assert tidy["transfer"].tolist() == [False, True]
    assert tidy["source_dataset"].tolist() == ["x", "x"] and tidy["source_num_train"].tolist() == [10, 10]
    assert tidy["weights_remaining_pct"].tolist() == [80.0, 80.0]


def test_search_costs_sum_the_search_trunk_and_read_the_whole_set_accuracy():
    rows = []
    for size in (100, 1000):  # searches: 2 rounds of tickets, then the tickets trained on the whole set (5000)
        rows += [
            _row(
                round=r,
                num_train=size,
                source_num_train=size,
                transfer=False,
                train_examples=size * 3,
                train_seconds=0.5,
                test_acc_at_early_stop=0.5,
            )
            for r in (0, 1)
        ]
        rows += [
            _row(round=1, num_train=5000, source_num_train=size, transfer=True, test_acc_at_early_stop=acc)
            for acc in ([0.70] if size == 100 else [0.80])
        ]
    rows += [
        _row(
            round=r,
            num_train=5000,
            source_num_train=5000,
            transfer=False,
            train_examples=15000,
            train_seconds=4.0,
            test_acc_at_early_stop=0.85,
        )
        for r in (0, 1)
    ]
    rows += [
        _row(
            round=1,
            num_train=5000,
            source_num_train=5000,
            transfer=False,
            kind="reinit",
            train_seconds=99.0,
            train_examples=99,
            test_acc_at_early_stop=0.1,
        )
    ]
    costs = analysis.search_costs(pd.DataFrame(rows)).set_index("search samples")
    assert costs["search_seconds"].tolist() == [1.0, 1.0, 8.0]  # reinit rows are not search cost
    assert costs["search_sample_epochs"].tolist() == [600, 6000, 30000]
    assert costs[analysis.ACCURACY].round(6).tolist() == [70.0, 80.0, 85.0]
    assert costs["compute saved vs all (%)"].round(6).tolist() == [98.0, 80.0, 0.0]
    text = analysis.conclude_q4(pd.DataFrame(rows))
    assert "- found with 100 samples: 70.00% (-15.00 points) for 98.0% less search compute" in text


def test_transfer_conclusion_compares_with_the_targets_own_tickets():
    rows = []
    for source, target, ticket, reinit in (
        ("x", "x", 0.9, 0.8),
        ("y", "y", 0.7, 0.6),
        ("x", "y", 0.65, 0.6),
        ("y", "x", 0.85, 0.8),
    ):
        for kind, acc in (("ticket", ticket), ("reinit", reinit)):
            rows.append(
                {
                    "source_dataset": source,
                    "dataset": target,
                    "round": 1,
                    "kind": kind,
                    "weights_remaining_pct": 80.0,
                    "test_acc_at_early_stop": acc,
                }
            )
    lines = analysis.conclude_transfer(pd.DataFrame(rows), "dataset").splitlines()
    assert "at 2 of 2 (source, target, pruning level) points, mean margin +5.00 points" in lines[0]
    assert "differ by -5.00 points on average" in lines[0]
    assert lines[1] == "- x -> y: beat reinit at 1 of 1 levels (mean +5.00), vs y's own tickets -5.00 points"
