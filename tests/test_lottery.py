import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from lthutils.config import ExperimentConfig
from lthutils.experiments import find_tickets, prepare
from lthutils.lottery import Ticket, data_seed, derive_seed, fresh_weights, next_mask, projected_remaining
from lthutils.models import build_model, layer_kinds
from lthutils.pruning import Mask
from lthutils.results import read_results
from lthutils.training import train


@pytest.fixture
def template():
    return build_model(ExperimentConfig(), (1, 28, 28), 10, seed=0)


def replace(config, **changes):
    return ExperimentConfig(**{**config.__dict__, **changes})


def results_of(config):
    path = Path(config.exp_root) / config.name / config.run_id() / "results.csv"
    frame = read_results(path)
    assert len(frame) == len(pd.read_csv(path))  # every row passes its checksum
    return frame


def test_imp_writes_every_round_and_kind(tiny):
    tickets = find_tickets(tiny)
    frame = results_of(tiny)
    assert list(zip(frame["round"], frame["kind"])) == [
        (0, "ticket"),
        (1, "ticket"),
        (1, "reinit"),
        (1, "random_mask"),
        (2, "ticket"),
        (2, "reinit"),
        (2, "random_mask"),
    ]
    remaining = frame.groupby("round")["weights_remaining"].first()
    expected_r1 = (235200 - round(0.2 * 235200) + 30000 - 6000 + 1000 - 100) / 266200
    assert remaining[0] == 1.0 and remaining[1] == pytest.approx(expected_r1)
    assert remaining.tolist() == projected_remaining(prepare(tiny).template, prepare(tiny).config)  # known beforehand
    assert (frame.groupby("round")["weights_remaining"].nunique() == 1).all()  # controls share the counts
    assert (frame["test_acc"] > 0.3).all()  # 300 real images, one epoch: well above chance (0.1)
    assert sorted(p.name for p in (tickets / "seed0").iterdir()) == ["round0.pt", "round1.pt", "round2.pt"]
    folder = tickets.parent.parent / "exp_result" / "tiny" / tiny.run_id()
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        ".lock",
        ".seed0.lock",
        "config.json",
        "provenance.json",
        "results.csv",
    ]  # and the run's hidden lock files


def test_init_reset_restores_theta_0_on_survivors(tiny):
    tickets = find_tickets(tiny)
    round0 = Ticket.load(tickets / "seed0" / "round0.pt")
    for round_index in (1, 2):
        ticket = Ticket.load(tickets / "seed0" / f"round{round_index}.pt")
        assert ticket.mask.weights_remaining() < 1
        for name, weight in ticket.weights.items():
            assert torch.equal(weight, round0.weights[name])  # theta_0 itself, not trained weights
        model = ticket.model(build_model(tiny.resolved(), (1, 28, 28), 10, seed=0))
        for name, param in model.named_parameters():
            if name in ticket.mask:
                assert torch.equal(param, round0.weights[name] * ticket.mask[name])


def test_rewind_reset_goes_back_to_step_k(tiny):
    config = ExperimentConfig(
        **{**tiny.__dict__, "reset": "rewind", "rewind_iteration": 2, "rounds": 1, "controls": ()}
    )
    tickets = find_tickets(config)
    theta_0 = Ticket.load(tickets / "seed0" / "round0.pt").weights
    rewound = Ticket.load(tickets / "seed0" / "round1.pt").weights
    assert not torch.equal(rewound["1.weight"], theta_0["1.weight"])
    # exactly the weights of theta_0 trained alone for 2 steps of round 0's batches (a constant lr)
    setting = prepare(replace(tiny, epochs=None, iterations=2, eval_every=0, rounds=1, controls=()))
    round0 = Ticket.load(tickets / "seed0" / "round0.pt")
    model = round0.model(setting.template)
    train(model, round0.mask, setting.splits(0), setting.config, data_seed(round0, "ticket"))
    assert all(torch.equal(weight, rewound[name]) for name, weight in model.state_dict().items())


def test_reinit_keeps_mask_changes_values(template):
    mask = Mask({name: (torch.rand_like(m) < 0.3).float() for name, m in Mask.ones(template).items()})
    ticket = Ticket(mask, fresh_weights(template, 1), seed=0, round=1)
    reinit = ticket.variant("reinit", template)
    assert reinit.mask is ticket.mask
    assert not torch.equal(reinit.weights["1.weight"], ticket.weights["1.weight"])
    assert reinit.weights["1.weight"].std().item() == pytest.approx(ticket.weights["1.weight"].std().item(), rel=0.02)
    assert torch.equal(reinit.weights["1.weight"], ticket.variant("reinit", template).weights["1.weight"])
    shuffled = ticket.variant("random_mask", template)
    assert shuffled.mask.alive() == mask.alive() and shuffled.weights is ticket.weights
    assert not torch.equal(shuffled.mask["1.weight"], mask["1.weight"])


def test_same_seed_same_masks_and_accuracies(tiny, tmp_path):
    first = find_tickets(tiny)
    again = ExperimentConfig(**{**tiny.__dict__, "exp_root": str(tmp_path / "b"), "model_root": str(tmp_path / "c")})
    second = find_tickets(again)
    cols = ["round", "kind", "weights_remaining", "test_acc", "val_loss", "early_stop_iter", "nonzero_weights"]
    pd.testing.assert_frame_equal(results_of(tiny)[cols], results_of(again)[cols])
    for round_index in (1, 2):
        a = Ticket.load(first / "seed0" / f"round{round_index}.pt").mask
        b = Ticket.load(second / "seed0" / f"round{round_index}.pt").mask
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_more_rounds_later_equals_all_rounds_at_once(tiny, tmp_path):
    cols = ["round", "kind", "weights_remaining", "test_acc", "val_loss", "early_stop_iter", "nonzero_by_layer"]
    find_tickets(replace(tiny, rounds=1))
    find_tickets(replace(tiny, rounds=3))
    straight = replace(tiny, rounds=3, exp_root=str(tmp_path / "s"), model_root=str(tmp_path / "m"))
    find_tickets(straight)
    extended, reference = results_of(tiny), results_of(straight)
    assert len(extended) == 1 + 3 * 3
    pd.testing.assert_frame_equal(
        extended[cols].sort_values(["round", "kind"]).reset_index(drop=True),
        reference[cols].sort_values(["round", "kind"]).reset_index(drop=True),
    )


def test_rows_record_non_zero_weights_per_layer(tiny):
    tickets = find_tickets(tiny)
    frame = results_of(tiny)
    for _, row in frame[frame.kind != "random_mask"].iterrows():
        mask = Ticket.load(tickets / "seed0" / f"round{row['round']}.pt").mask
        assert json.loads(row["nonzero_by_layer"]) == mask.alive()
        assert row["nonzero_weights"] == sum(mask.alive().values())


def test_seeds_differ(tiny):
    find_tickets(ExperimentConfig(**{**tiny.__dict__, "seeds": (0, 1), "rounds": 1, "controls": ()}))
    frame = results_of(tiny)
    assert sorted(frame["seed"]) == [0, 0, 1, 1]
    assert frame[frame.seed == 0]["val_loss"].tolist() != frame[frame.seed == 1]["val_loss"].tolist()


def test_next_mask_uses_the_trained_weights(template):
    config = ExperimentConfig(prune_scope="global", prune_rate=0.5).resolved()
    dense = Ticket(Mask.ones(template), fresh_weights(template, 1), seed=0, round=0)
    mask = next_mask(template, dense, config)
    assert sum(mask.alive().values()) == 266200 - 133100
    layerwise = next_mask(template, dense, ExperimentConfig().resolved())
    assert layerwise.alive() == {"1.weight": 188160, "3.weight": 24000, "5.weight": 900}


def test_derived_seeds_are_stable_and_distinct():
    # pinned: the same in every process and on every machine (rows are resumed and carried across them)
    assert derive_seed(0, 1, "reinit") == 1534706333 and derive_seed(4, 9, "data") == 1629274342
    assert len({derive_seed(s, r, k) for s in range(3) for r in range(5) for k in ("reinit", "data")}) == 30


def test_seeds_trained_together_equal_seeds_trained_alone(tiny, tmp_path):
    """Fully connected runs train every seed and kind of a round in one batch; a model's numbers
    do not depend on what else is in its batch."""
    together = replace(tiny, seeds=(0, 1))
    alone = replace(tiny, seeds=(1,), exp_root=str(tmp_path / "alone"), model_root=str(tmp_path / "alone_m"))
    find_tickets(together)
    find_tickets(alone)
    cols = ["round", "kind", "weights_remaining", "test_acc", "val_loss", "early_stop_iter", "nonzero_by_layer"]
    both = results_of(together)
    pd.testing.assert_frame_equal(
        both[both.seed == 1][cols].reset_index(drop=True), results_of(alone)[cols].reset_index(drop=True)
    )


def test_the_levels_of_global_pruning_are_known_before_training(tiny):
    config = replace(tiny, prune_scope="global", prune_rate=0.3, controls=())
    find_tickets(config)
    remaining = results_of(config).groupby("round")["weights_remaining"].first().tolist()
    assert remaining == projected_remaining(prepare(config).template, prepare(config).config)
    assert remaining[2] == pytest.approx(0.49, abs=1e-4)


def test_retrain_is_the_ticket_itself_on_another_data_order(tiny, tmp_path):
    """The null control: same mask and weights as the ticket, only the batches differ, and the
    ticket's own rows are those of a run without it."""
    with_null = replace(tiny, controls=("retrain",))
    find_tickets(with_null)
    alone = replace(tiny, controls=(), exp_root=str(tmp_path / "a"), model_root=str(tmp_path / "b"))
    find_tickets(alone)
    frame, reference = results_of(with_null), results_of(alone)
    cols = ["round", "weights_remaining", "test_acc", "val_loss", "early_stop_iter", "curve"]
    tickets = frame[frame["kind"] == "ticket"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(tickets, reference[cols].reset_index(drop=True))
    retrain = frame[frame["kind"] == "retrain"].set_index("round")
    ticket = frame[frame["kind"] == "ticket"].set_index("round").loc[retrain.index]
    assert list(retrain.index) == [1, 2] and (retrain["nonzero_by_layer"] == ticket["nonzero_by_layer"]).all()
    assert (retrain["curve"] != ticket["curve"]).all()  # another order: another learning curve
    start = [json.loads(curve)[0] for curve in (retrain.loc[1, "curve"], ticket.loc[1, "curve"])]
    assert start[0] == start[1]  # the same weights before the first step
    ticket_row = Ticket(Mask.ones(build_model(tiny, (1, 28, 28), 10, 0)), {}, seed=0, round=1)
    assert data_seed(ticket_row, "retrain") != data_seed(ticket_row, "ticket") == data_seed(ticket_row, "reinit")


@pytest.mark.parametrize("model", ["cifar_resnet_8_4", "cifar_vgg_11"])
def test_imp_on_batch_norm_models_prunes_globally_and_leaves_batch_norm_dense(tiny, model):
    """The CIFAR families through IMP with rewinding on real images: the levels global pruning
    promises, batch norm never masked, VGG's output layer dense, every mask held, the ResNet above
    chance."""
    config = replace(  # digits5k: real digits, and a test set of 1,000 that a VGG evaluates quickly
        tiny,
        dataset="digits5k",
        model=model,
        reset="rewind",
        rewind_iteration=2,
        iterations=40,
        batch_size=60,
        lr=0.05,
        num_train=600,
    )
    if model == "cifar_vgg_11":
        config = replace(config, iterations=8, rounds=1, controls=("reinit",))
    tickets = find_tickets(config)
    frame = results_of(config)
    setup = prepare(config)
    remaining = frame.groupby("round")["weights_remaining"].first().tolist()
    assert remaining == pytest.approx(projected_remaining(setup.template, setup.config))
    assert remaining[1] == pytest.approx(0.8, abs=1e-4)  # one threshold over all the masked weights
    ticket = Ticket.load(tickets / "seed0" / f"round{config.rounds}.pt")
    assert not any("bn" in name or name.endswith(".running_mean") for name in ticket.mask)
    output = next(name for name, kind in layer_kinds(setup.template).items() if kind == "output")
    assert (f"{output}.weight" in ticket.mask) == (model != "cifar_vgg_11")  # OpenLTH leaves VGG's dense
    for row in frame[frame["kind"] != "random_mask"].itertuples():  # each trained model's weights held its mask
        alive = Ticket.load(tickets / f"seed{row.seed}" / f"round{row.round}.pt").mask.alive()
        nonzero = json.loads(row.nonzero_by_layer)  # a surviving weight may train to exactly 0 (VGG: 1 of 1.8 M)
        assert nonzero.keys() == alive.keys() and all(nonzero[name] <= alive[name] for name in alive)
        assert sum(nonzero.values()) >= 0.9999 * sum(alive.values())
    if model == "cifar_resnet_8_4":
        # 600 real digits, 40 steps; chance is 0.1 with a sd of 0.0095 on 1,000 test digits: 0.13 is 3 sd above it
        assert (frame["test_acc"] > 0.13).all() and frame["test_acc"].mean() > 0.2
