import dataclasses
import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats
import torch

from lthutils import analysis, cost, pipeline_cost, rule, study
from lthutils.config import ConfigError
from lthutils.experiments import finished_elsewhere
from lthutils.lottery import Ticket
from lthutils.results import read_results
from lthutils.rule import Analysis

COMMON = dict(
    rounds=2,
    rate=None,
    iterations=50,
    seeds=[0],
    eval_every=5,
    val_size=None,
    exp_root="/e",
    model_root="/m",
    quiet=True,
)


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
    lrs = {"sgd": 0.01, "adam": 0.002}
    units = study.plan_q3(["sgd", "adam"], lrs, 0.9, "fashionmnist", "lenet300", 300, [2], **COMMON)
    assert [(u.source.optimizer, u.config.optimizer) for u in units if u.source] == [("sgd", "adam"), ("adam", "sgd")]
    for unit in units:  # each optimizer at its own rate, where the tickets were found and where they train
        assert unit.config.lr == lrs[unit.config.optimizer]
        assert unit.source is None or unit.source.lr == lrs[unit.source.optimizer]
    with pytest.raises(ConfigError, match="heatmap_rounds=\\[3\\]"):
        study.plan_q3(["sgd", "adam"], lrs, 0.9, "fashionmnist", "lenet300", 300, [3], **COMMON)
    with pytest.raises(ConfigError, match="lrs=\\{'sgd': 0.01\\} is not allowed: expected a learning rate for each"):
        study.plan_q3(["sgd", "adam"], {"sgd": 0.01}, 0.9, "fashionmnist", "lenet300", 300, [2], **COMMON)


def test_a_recipe_sets_config_fields_for_every_run_of_a_question():
    recipe = {"weight_decay": 1e-4, "lr_schedule": "step", "lr_milestones": [0.5, 0.75], "reset": "rewind"}
    recipe["rewind_iteration"] = 5
    units = study.plan_q2(["cifar10", "svhn"], "cifar_resnet_20", None, None, None, [1], **COMMON, recipe=recipe)
    for unit in units:
        config = unit.config.resolved()
        assert (config.weight_decay, config.lr_milestones, config.reset, config.prune_scope) == (
            1e-4,
            (0.5, 0.75),
            "rewind",
            "global",
        )
    assert units[0].config.augment is None and units[0].config.resolved().augment == "crop_flip"  # CIFAR's default
    lrs = {"sgd": 0.1, "adam": 1e-3}
    with pytest.raises(ConfigError, match=r"recipe=\{'momentum': 1\} is not allowed: expected fields this question"):
        study.plan_q3(["sgd", "adam"], lrs, 0.9, "cifar10", "cifar_vgg_11", None, [1], **COMMON, recipe={"momentum": 1})
    q1 = ("cifar10", ["cifar_resnet_20"], None, None, None, ["reinit"])
    with pytest.raises(ConfigError, match=r"recipe=\{'dataset': 'svhn'\} is not allowed"):
        study.plan_q1(*q1, **COMMON, recipe={"dataset": "svhn"})
    with pytest.raises(ConfigError, match="weight_decay=-1 is not allowed"):
        study.plan_q1(*q1, **COMMON, recipe={"weight_decay": -1})


def test_q4_searches_each_size_at_equal_steps_and_at_equal_epochs(tmp_path):
    common = {**COMMON, "exp_root": str(tmp_path / "e"), "model_root": str(tmp_path / "m")}
    units = study.plan_q4([100, 1000], None, "digits5k", "lenet300", None, None, **common)
    full = units[0].config  # digits5k: 4,000 training images, 400 kept for validation: 3,600
    assert full.num_train is None and full.controls == ("reinit", "random_mask", "magnitude_init")
    searches = [(u.config.num_train, u.config.iterations, u.config.controls) for u in units[1:] if u.source is None]
    # equal steps: the whole-set search's 50; equal epochs: ceil(50 x size / 3,600)
    assert searches == [(100, 50, ()), (100, 2, ()), (1000, 50, ()), (1000, 14, ())]
    trained = [u for u in units if u.source is not None]
    assert [u.source.iterations for u in trained] == [50, 2, 50, 14]
    assert all(
        u.config.num_train is None and u.config.iterations == 50 and u.config.controls == ("reinit",) for u in trained
    )
    with pytest.raises(ConfigError, match="search_sizes=\\[100, 3600\\] is not allowed: expected sizes below"):
        study.plan_q4([100, 3600], None, "digits5k", "lenet300", None, None, **common)


def test_folders_that_cannot_exist_here_are_refused_before_any_work(tmp_path):
    """An executed notebook moved to another machine holds absolute folders that are not there."""
    moved = {**COMMON, "exp_root": str(tmp_path / "gone" / "exp_result"), "model_root": str(tmp_path / "m")}
    units = study.plan_q1("digits5k", ["fc:1x10"], 100, None, None, ["reinit"], **moved)
    with pytest.raises(ConfigError, match="^exp_root='.*/gone/exp_result' is not allowed: expected a folder, or a new"):
        study.run(units)
    (tmp_path / "file").write_text("")
    folders = {"exp_root": str(tmp_path / "e"), "model_root": str(tmp_path / "file")}
    units = study.plan_q1("digits5k", ["fc:1x10"], 100, None, None, ["reinit"], **{**COMMON, **folders})
    with pytest.raises(ConfigError, match="^model_root='.*/file' is not allowed"):
        study.check(units)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written


def test_a_notebooks_relative_folders_start_at_the_projects_notebooks_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an executed copy runs elsewhere: the working directory does not count
    assert study.notebook_folder("exp_root", "../exp_result") == str(study.NOTEBOOKS_DIR.parent / "exp_result")
    assert study.notebook_folder("model_root", "/abs/models") == "/abs/models"
    with pytest.raises(ConfigError, match="^exp_root=5 is not allowed: expected a folder path"):
        study.notebook_folder("exp_root", 5)


def test_parse_model():
    assert study.parse_model("fc:2x300") == {"model": "fc", "n_layers": 2, "n_neurons": 300}
    assert study.parse_model("conv4") == {"model": "conv4"}
    with pytest.raises(ConfigError, match="models='fc:2'"):
        study.parse_model("fc:2")


def _pairs(setting: str, gaps: list[float], converged: bool = True, control: str = "reinit") -> list[dict]:
    """Rows of one setting: per seed a converged (or not) dense run and, at three pruned levels
    (80%, 40%, 20% of weights), a ticket ahead of its control by the seed's gap (points)."""
    rows = []
    for seed, gap in enumerate(gaps):
        dense = {"model": setting, "seed": seed, "round": 0, "kind": "ticket", "weights_remaining": 1.0}
        rows.append({**dense, "test_acc_at_early_stop": 0.8, "converged": converged, "diverged": False})
        for round_index, remaining in ((1, 0.8), (2, 0.4), (3, 0.2)):
            base = {"model": setting, "seed": seed, "round": round_index, "weights_remaining": remaining}
            base.update(converged=True, diverged=False, run_id=f"run-{setting}")
            rows.append({**base, "kind": control, "test_acc_at_early_stop": 0.8})
            rows.append({**base, "kind": "ticket", "test_acc_at_early_stop": 0.8 + gap / 100})
    return rows


def q1_frame(*settings: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([row for rows in settings for row in rows])
    return frame.assign(weights_remaining_pct=100 * frame["weights_remaining"], transfer=False)


def test_q1_conclusion_is_the_count_of_the_rules_primary_verdicts():
    frame = q1_frame(
        _pairs("gain", [2.9, 3.1, 3.0, 3.2, 2.8]),
        _pairs("null", [0.05, -0.04, 0.02, -0.03, 0.01]),
        _pairs("noisy", [3.0, -2.5, 1.5, -3.0, 2.0]),
        _pairs("early", [3.0, 3.1, 2.9, 3.0, 3.05], converged=False),
    )
    evidence = analysis.evidence_q1(frame)
    verdicts = evidence.primary.set_index("setting")["verdict"].to_dict()
    assert verdicts == {"gain": "better", "null": "equivalent", "noisy": "inconclusive", "early": "unconverged"}
    assert set(evidence.primary["levels"]) == {2}  # 40% and 20%: the pruned levels at or below 50%
    lines = evidence.conclusion.splitlines()
    assert lines[0] == (
        "**ticket vs reinit**: better at 1 (1 by more than 0.5 points), equivalent at 1, worse at 0, inconclusive at "
        "1, no verdict at 1 (dense network unconverged) of 4 settings (primary endpoint; Holm across 3 settings)."
    )
    assert lines[1].startswith("- gain: **better, by more than 0.5 points**: +3.00 points [")
    assert "(5 seeds; 2 levels, 40-20% of weights)" in lines[1]
    noisy = next(line for line in lines if line.startswith("- noisy"))
    seeds = evidence.primary.set_index("setting").loc["noisy", "seeds_to_decide"]
    assert f"about {int(seeds)} seeds would decide it" in noisy or "more than 1,000 seeds" in noisy
    assert (
        "Dense network did not converge (least validation loss at the last evaluation for at least half of the seeds) "
        "for: early." in evidence.caveats
    )
    markdown = evidence.markdown()
    assert markdown.index("**Decision rule**") < markdown.index("**ticket vs reinit**") < markdown.index("**Caveats**")
    assert "primary endpoint**: each seed's mean paired difference over the pruned levels at or below 50%" in markdown
    assert evidence.runs[("ticket vs reinit", "gain")] == {"run-gain"}
    table = rule.verdict_table(evidence.primary, 0.5).set_index("setting")  # the reader's verdicts.csv
    primary = evidence.primary.set_index("setting")
    for setting, gaps in (("gain", [2.9, 3.1, 3.0, 3.2, 2.8]), ("noisy", [3.0, -2.5, 1.5, -3.0, 2.0])):
        beyond = scipy.stats.ttest_1samp(gaps, 0.5, alternative="greater").pvalue  # both means above 0
        assert primary.loc[setting, "p_beyond"] == pytest.approx(beyond, rel=1e-4)
        assert table.loc[setting, "p (beyond margin)"] == round(primary.loc[setting, "p_beyond"], 5)
    assert primary.loc["gain", "p_beyond"] <= primary.loc["gain", "level_direction"] / 2  # "by more than"


def test_settings_are_listed_in_their_runs_natural_order():
    """Reports read runs in natural order (numbers compare as numbers), and Q1 lists its settings
    in the rows' order, so figures and tables run fc1x10, fc1x50, fc1x100, not fc1x10, fc1x100, fc1x50."""
    names = ["fc1x100", "fc2x10", "fc1x50", "lenet5", "fc1x10", "fc1x300"]
    paths = sorted(
        (Path("exp_result/q1") / f"{name}-mnist-adam-0a1b2c3d/results.csv" for name in names), key=study.natural_key
    )
    assert [path.parent.name.split("-")[0] for path in paths] == [
        "fc1x10",
        "fc1x50",
        "fc1x100",
        "fc1x300",
        "fc2x10",
        "lenet5",
    ]
    frame = q1_frame(*(_pairs(name, [1.0, 1.2, 0.9]) for name in ("fc1x10", "fc1x50", "fc1x100")))
    assert list(analysis.evidence_q1(frame).primary["setting"]) == ["fc1x10", "fc1x50", "fc1x100"]


def test_a_dense_network_still_improving_for_a_minority_of_seeds_keeps_the_verdict():
    """On a plateau the last evaluation is now and then the least by chance: 2 of 5 seeds flagged
    leave the setting judged (and say so), 3 of 5 take its verdict away."""
    gain = _pairs("gain", [2.9, 3.1, 3.0, 3.2, 2.8])
    mostly = _pairs("mostly", [2.9, 3.1, 3.0, 3.2, 2.8])
    for rows, flagged in ((gain, {1, 4}), (mostly, {0, 1, 2})):
        for row in rows:
            if row["round"] == 0 and row["seed"] in flagged:
                row["converged"] = False
    evidence = analysis.evidence_q1(q1_frame(gain, mostly))
    assert evidence.primary.set_index("setting")["verdict"].to_dict() == {"gain": "better", "mostly": "unconverged"}
    assert "by seeds: gain 2 of 5." in evidence.caveats and "for: mostly." in evidence.caveats


def test_the_primary_endpoint_can_be_the_sparsest_level():
    gaps = [0.9, 1.1, 1.0, 1.2, 0.8]
    rows = _pairs("gain", gaps)
    for row in rows:  # the gap grows with sparsity: 1x at 80%, 2x at 40%, 3x at 20%
        if row["kind"] == "ticket" and row["round"] > 0:
            row["test_acc_at_early_stop"] = 0.8 + row["round"] * gaps[row["seed"]] / 100
    last = analysis.evidence_q1(q1_frame(rows), Analysis.declare({"level": "last"})).primary
    band = analysis.evidence_q1(q1_frame(rows), Analysis.declare({"band": [0.0, 1.0]})).primary
    assert last["mean"].iloc[0] == pytest.approx(3.0) and last["levels"].iloc[0] == 1
    assert band["mean"].iloc[0] == pytest.approx(2.0) and band["levels"].iloc[0] == 3


@pytest.mark.parametrize(
    "primary, delta",
    [({"band": [0.6, 0.2]}, 0.5), ({"band": [0, 2]}, 0.5), ({"level": "first"}, 0.5), ("last", 0.5), (None, 0)],
)
def test_a_bad_analysis_is_one_clear_error(primary, delta):
    with pytest.raises(ConfigError, match="primary=|delta="):
        Analysis.declare(primary, delta)


def test_a_diverged_control_drops_its_seed_and_the_unconverged_are_left_out_of_holm():
    gain = _pairs("gain", [1.5, 0.7, 1.9, 0.9, 1.4])
    frame = q1_frame(gain)
    alone = analysis.evidence_q1(frame).primary
    with_unconverged = analysis.evidence_q1(q1_frame(gain, _pairs("early", [0.0] * 5, converged=False))).primary
    judged = with_unconverged[with_unconverged["setting"] == "gain"]
    assert judged["level_direction"].tolist() == alone["level_direction"].tolist() == [0.05]
    frame.loc[(frame["seed"] == 3) & (frame["kind"] == "reinit") & (frame["round"] == 2), "test_acc_at_early_stop"] = (
        None
    )
    dropped = analysis.evidence_q1(frame)
    assert dropped.primary["n"].iloc[0] == 4
    assert dropped.primary["mean"].iloc[0] == pytest.approx((1.5 + 0.7 + 1.9 + 1.4) / 4)
    levels = dropped.levels.set_index("round")
    assert levels.loc[1, "n"] == 5 and levels.loc[2, "n"] == 4


def test_transfer_evidence_pairs_with_reinit_and_with_the_targets_own_ticket():
    rows = []
    for source, target, ticket in (("x", "x", 0.90), ("y", "y", 0.70), ("x", "y", 0.65), ("y", "x", 0.85)):
        for seed in range(3):
            for round_index, kind, acc in ((0, "ticket", 0.8), (1, "ticket", ticket + seed / 1000), (1, "reinit", 0.6)):
                rows.append(
                    {"source_dataset": source, "dataset": target, "seed": seed, "round": round_index, "kind": kind}
                    | {"test_acc_at_early_stop": acc, "weights_remaining": 1.0 - 0.6 * round_index}
                    | {"transfer": source != target, "converged": True, "diverged": False, "run_id": source + target}
                    | {"source_run_id": None if source == target else source + source}
                )
    frame = pd.DataFrame(rows).assign(weights_remaining_pct=lambda f: 100 * f["weights_remaining"])
    evidence = analysis.evidence_transfer(frame, axis="dataset")
    means = evidence.primary.set_index(["comparison", "setting"])["mean"]
    assert means[("ticket vs reinit", "x -> y")] == pytest.approx(5.1)  # seeds add 0, 0.1 and 0.2 points
    assert means[("ticket vs reinit", "x (own)")] == pytest.approx(30.1)
    assert means[("transferred ticket vs the target's own ticket", "x -> y")] == pytest.approx(-5.0)
    assert means[("transferred ticket vs the target's own ticket", "y -> x")] == pytest.approx(-5.0)
    # a transfer needs its own run, the search that found its tickets and the target's own search
    assert evidence.runs[("transferred ticket vs the target's own ticket", "x -> y")] == {"xy", "xx", "yy"}


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
    assert tidy["converged"].tolist() == [False, False]  # not recorded: not known to have converged


@pytest.mark.slow
def test_q4_trains_the_baselines_at_the_tickets_sparsities_and_costs_the_whole_pipeline(tmp_path):
    """A tiny real Q4: all of digits5k (3,600) and searches on 100 images at equal steps (30)
    and equal epochs (1 step), 2 rounds, 2 seeds."""
    common = {**COMMON, "iterations": 30, "seeds": [0, 1], "eval_every": 10}
    units = study.plan_q4(
        [100],
        None,
        "digits5k",
        "fc:1x20",
        None,
        None,
        **common | {"exp_root": str(tmp_path / "e"), "model_root": str(tmp_path / "m")},
    )
    frame = study.run(units)
    settled = analysis.with_settings_q4(frame)
    full = settled[settled["setting"] == "all 3,600"]
    for (seed, round_index), rows in full[full["round"] > 0].groupby(["seed", "round"]):
        layers = rows.set_index("kind")["nonzero_by_layer"]
        assert sorted(layers.index) == ["magnitude_init", "random_mask", "reinit", "ticket"]
        assert layers.nunique() == 1, (seed, round_index)  # every baseline at the ticket's per-layer counts
    searches = settled[~settled["transfer"] & (settled["num_train"] == 100)]
    assert sorted(searches.groupby("setting")["train_iterations"].unique().map(list).items()) == [
        ("100, equal epochs", [1]),
        ("100, equal steps", [30]),
    ]
    trained = settled[settled["transfer"]]
    assert set(trained["train_iterations"]) == {30} and set(trained["kind"]) == {"ticket", "reinit"}
    costs = pipeline_cost.pipeline_costs(settled).set_index(["pipeline", "seed", "round"])["sample_epochs"]
    final = 30 * 60 / 3600  # one training on the whole set: 30 steps of 60
    assert costs[("magnitude_init", 0, 2)] == pytest.approx(final)  # no search
    assert costs[("100, equal steps", 0, 2)] == pytest.approx(final + 2 * 15 * 100 / 3600)  # 2 rounds of 15 epochs
    assert costs[("100, equal epochs", 0, 2)] == pytest.approx(final + 2 * 60 / 3600)
    assert costs[("all 3,600", 1, 1)] == pytest.approx(2 * final)
    evidence = analysis.evidence_q4(frame, Analysis.declare({"band": [0.0, 1.0]}, seeds=[0, 1]))
    assert set(evidence.primary["comparison"]) == {
        "ticket vs reinit of its mask",
        "ticket vs magnitude_init",
        "ticket vs random_mask",
        "few-sample ticket vs all-sample ticket",
    }
    assert set(evidence.primary["n"]) == {2}
    overall = evidence.overlap[evidence.overlap["layer"] == "overall"]
    assert set(overall["pair"]) == {
        "ticket of all 3,600 vs magnitude at init",
        "ticket of 100, equal steps vs magnitude at init",
        "ticket of 100, equal epochs vs magnitude at init",
        "across seeds",
        "few-sample vs all-sample ticket (same seed)",
    }
    assert overall["chance_corrected"].between(-0.1, 1.0).all()
    # every overall Jaccard recomputed from the tickets on disk: the right folders, seeds and rounds paired
    searches = settled[~settled["transfer"] & (settled["kind"] == "ticket")]
    assert (searches.groupby("setting")["tickets"].nunique() == 1).all()  # one search per setting
    folder = dict(zip(searches["setting"], searches["tickets"]))

    def ticket(setting: str, seed: int, round_index: int) -> Ticket:
        return Ticket.load(Path(folder[setting]) / f"seed{seed}" / f"round{round_index}.pt")

    def jaccard(first: dict, second: dict) -> float:
        shared = sum(int((first[n].bool() & second[n].bool()).sum()) for n in first)
        return shared / (sum(int(first[n].sum() + second[n].sum()) for n in first) - shared)

    def at_init(found: Ticket) -> dict:  # per layer, the largest |theta_0| as many as the ticket keeps
        kept = {}
        for name, mask in found.mask.items():
            scores = found.weights[name].abs().flatten()
            chosen = torch.zeros_like(scores)
            chosen[torch.sort(scores, descending=True, stable=True).indices[: int(mask.sum())]] = 1
            kept[name] = chosen.reshape(mask.shape)
        return kept

    measured = overall.set_index(["pair", "setting", "seed", "round"])["jaccard"]
    expected = {}
    for setting in folder:
        for seed, round_index in itertools.product([0, 1], [1, 2]):
            found = ticket(setting, seed, round_index)
            expected[(f"ticket of {setting} vs magnitude at init", setting, seed, round_index)] = jaccard(
                found.mask, at_init(found)
            )
            if seed == 0:
                other = ticket(setting, 1, round_index).mask
                expected[("across seeds", setting, 0, round_index)] = jaccard(found.mask, other)
            if setting != "all 3,600":
                pair = ("few-sample vs all-sample ticket (same seed)", setting, seed, round_index)
                expected[pair] = jaccard(found.mask, ticket("all 3,600", seed, round_index).mask)
    assert sorted(measured.index) == sorted(expected)
    assert measured.to_dict() == pytest.approx(expected)
    assert "**Pipeline cost**" in evidence.conclusion and "Mask overlap" in evidence.conclusion


def _with_runs(rows: list[dict], run_id: str) -> list[dict]:
    return [{**row, "run_id": run_id} for row in rows]


def test_seeds_until_decided_extends_only_the_runs_of_undecided_settings():
    units = study.plan_q1("fashionmnist", ["fc:1x20", "fc:1x30"], 300, None, None, ["reinit"], **COMMON)
    decided, undecided = (unit.results_path.parent.name for unit in units)
    frame = q1_frame(
        _with_runs(_pairs("fc1x20", [2.9, 3.1, 3.0, 3.2, 2.8]), decided),
        _with_runs(_pairs("fc1x30", [3.0, -2.5, 1.5, -3.0, 2.0]), undecided),
    )
    evidence = analysis.evidence_q1(frame)
    assert evidence.primary["verdict"].tolist() == ["better", "inconclusive"]
    assert study.needing_seeds(units, evidence) == [units[1]]


def test_a_transfer_left_undecided_extends_its_tickets_search_too():
    units = study.plan_q2(["fashionmnist", "digits5k"], "lenet300", 300, None, None, [1, 2], **COMMON)
    run = {
        (u.config.dataset, None if u.source is None else u.source.dataset): u.results_path.parent.name for u in units
    }
    rows = []
    for (target, source), run_id in run.items():
        gaps = {  # only fashionmnist -> digits5k is noisy: its two comparisons stay open
            ("digits5k", "fashionmnist"): [3.0, -2.5, 1.5, -3.0, 2.0],
            ("fashionmnist", "digits5k"): [2.95, 3.05, 3.0, 3.15, 2.85],  # its own ticket's, within 0.05 points
        }.get((target, source), [2.9, 3.1, 3.0, 3.2, 2.8])
        for row in _with_runs(_pairs(target, gaps), run_id):
            source_run = None if source is None else run[source, None]
            rows.append({**row, "dataset": target, "source_dataset": source or target, "source_run_id": source_run})
    frame = q1_frame(rows).assign(transfer=lambda f: f["source_run_id"].notna())
    evidence = analysis.evidence_transfer(frame, axis="dataset")
    primary = evidence.primary.set_index(["comparison", "setting"])["verdict"]
    assert primary[("ticket vs reinit", "fashionmnist -> digits5k")] == "inconclusive"
    assert primary[("ticket vs reinit", "digits5k (own)")] == "better"
    wanted = {
        (u.config.dataset, None if u.source is None else u.source.dataset) for u in study.needing_seeds(units, evidence)
    }
    # the transfer, the search that found its tickets, and the target's own search (its own tickets are compared)
    assert wanted == {("digits5k", "fashionmnist"), ("fashionmnist", None), ("digits5k", None)}


def _open_runs(question: study.Question, frame: pd.DataFrame, declared: Analysis) -> set[str]:
    """The runs behind the settings the frame's rows leave inconclusive."""
    evidence = question.evidence(frame, declared)
    primary = evidence.primary[evidence.primary["verdict"] == "inconclusive"]
    return set().union(*(evidence.runs[key] for key in zip(primary["comparison"], primary["setting"])))


@pytest.mark.slow
@pytest.mark.parametrize("delta", [0.5, 50.0])  # 50 points: equivalent at the first look, so nothing is added
def test_a_sequential_run_adds_seeds_only_where_undecided_and_resumes(tmp_path, delta):
    roots = {"exp_root": str(tmp_path / "e"), "model_root": str(tmp_path / "m")}
    parameters = {**COMMON, **roots, "rounds": 1, "iterations": 200, "eval_every": 20, "primary": {"level": "last"}}
    parameters["delta"] = delta  # 200 steps on 300 images at lr 0.01: the dense networks converge (verdicts are drawn)
    parameters["seeds"] = {"start": 2, "step": 1, "max": 4, "spending": "pocock"}
    question = study.QUESTIONS["q1"]
    models = ["fc:1x20", "fc:1x30"]
    units, declared = question.units(
        dataset="digits5k", models=models, num_train=300, optimizer=None, lr=0.01, controls=["reinit"], **parameters
    )
    assert {unit.config.seeds for unit in units} == {(0, 1)}  # the first look's
    frame = study.run(units, declared=declared, question=question)
    design = declared.design
    seeds = frame.groupby("run_id")["seed"].nunique().to_dict()
    for unit in units:  # the seeds of the first look at which none of the run's settings was open
        run_id = unit.results_path.parent.name
        looks = [
            k
            for k in range(len(design.looks) - 1)
            if run_id not in _open_runs(question, frame[frame["seed"].isin(design.seeds_at(k))], declared)
        ]
        assert seeds[run_id] == design.looks[looks[0] if looks else -1], run_id
    if delta == 50.0:  # every setting stops before the last look; at 0.5 points they run on
        assert max(seeds.values()) < 4
        assert set(question.evidence(frame, declared).primary["verdict"]) == {"equivalent"}
    else:
        assert max(seeds.values()) > 2  # a run left open at the first look got more seeds
    before = {path: path.read_bytes() for path in (tmp_path / "e").rglob("results.csv")}
    again = study.run(units, declared=declared, question=question)
    assert {path: path.read_bytes() for path in (tmp_path / "e").rglob("results.csv")} == before  # nothing retrained
    pd.testing.assert_frame_equal(again, frame)
    plan = json.loads(next((tmp_path / "e" / "q1" / "plans").glob("*.json")).read_text())
    assert plan["analysis"] == declared.to_dict() and plan["analysis"]["seeds"]["max"] == 4


def test_a_search_two_questions_share_is_trained_once_its_rows_copied_and_priced_once(tiny):
    """params/full/ runs the MNIST / Adam / LeNet-300-100 search in Q2, Q3 and Q4 (one run id:
    controls are not part of it); the first file to run trains it, the others copy its rows and
    train only the controls it lacks, and the preview prices it so."""
    first = dataclasses.replace(tiny, name="q3", controls=("reinit",), seeds=(0, 1))
    later = dataclasses.replace(tiny, name="q4", controls=("reinit", "random_mask"), seeds=(0, 1))
    assert first.run_id() == later.run_id()
    searched: dict = {}
    priced = [cost.plan_cost([study.Unit(c)], "tcp://nowhere:1", searched=searched) for c in (first, later)]
    assert [(p.trainings, p.shared, p.done) for p in priced] == [(10, 0, 0), (14, 10, 0)]  # 2 seeds x (1 + 2 x kinds)
    assert priced[1].steps == 4 * priced[0].steps // 10  # only random_mask's 2 rounds x 2 seeds are trained

    study.run([study.Unit(first)])
    tickets = {path: path.read_bytes() for path in Path(tiny.model_root).rglob("*.pt")}
    study.run([study.Unit(later)])
    assert {path: path.read_bytes() for path in Path(tiny.model_root).rglob("*.pt")} == tickets  # not searched again
    mine, theirs = (read_results(study.Unit(c).results_path) for c in (later, first))
    copied = mine[mine["kind"] != "random_mask"].sort_values(["seed", "round", "kind"], ignore_index=True)
    pd.testing.assert_frame_equal(copied, theirs.sort_values(["seed", "round", "kind"], ignore_index=True))
    assert len(mine[mine["kind"] == "random_mask"]) == 4
    made_by = json.loads((study.Unit(later).results_path.parent / "provenance.json").read_text())
    assert made_by["rows_copied_from"] == [str(study.Unit(first).results_path.parent)]
    assert cost.plan_cost([study.Unit(later)], "tcp://nowhere:1").done == 14
    elsewhere = dataclasses.replace(later, name="q5", model_root=tiny.model_root + "-other")
    assert finished_elsewhere(elsewhere).empty  # tickets not where this run would read them: trained afresh
