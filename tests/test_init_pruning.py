"""Pruning at initialization (SNIP, GraSP, SynFlow), its ablations and the mask-1 actions, as
controls: scores against their definitions computed another way, counts, and real training."""

import json

import pytest
import torch
from torch import nn

from lthutils.analysis import accuracy_at_start
from lthutils.config import CONTROLS, ExperimentConfig
from lthutils.data import Splits, make_splits
from lthutils.experiments import find_tickets, prepare
from lthutils.init_pruning import (
    SCORE_EXAMPLES_PER_CLASS,
    grasp_scores,
    init_mask,
    score_sample,
    snip_scores,
    synflow_scores,
)
from lthutils.lottery import Ticket, fresh_weights
from lthutils.models import build_model
from lthutils.pruning import Mask
from lthutils.results import read_results
from lthutils.training import evaluate, make_stack


@pytest.fixture(scope="module")
def splits(digits):
    return make_splits(digits, num_train=200, val_size=100, seed=0)


@pytest.fixture(scope="module")
def lenet(splits):
    return build_model(ExperimentConfig(dataset="digits5k", n_neurons=20), tuple(splits.train_images.shape[1:]), 10, 0)


def small_net() -> nn.Module:
    """Two bias-free linear layers: SynFlow's score has a closed form."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))


def test_the_score_sample_is_the_first_examples_of_each_class(splits):
    images, labels = score_sample(splits)
    assert torch.bincount(labels).tolist() == [SCORE_EXAMPLES_PER_CLASS] * 10
    first_of_3 = torch.nonzero(splits.train_labels == 3).flatten()[:SCORE_EXAMPLES_PER_CLASS]
    assert torch.equal(images[labels == 3], splits.train_images[first_of_3])


def test_snip_is_the_loss_gradient_with_respect_to_a_mask_of_ones(lenet, splits):
    """SNIP's connection sensitivity |dL/dc| at c = 1, for the network with weights c * w."""
    weights = lenet.state_dict()
    names = ["1.weight", "3.weight", "5.weight"]
    scores = snip_scores(lenet, weights, names, splits)
    gates = {n: torch.ones_like(weights[n], requires_grad=True) for n in names}
    images, labels = score_sample(splits)
    gated = torch.func.functional_call(lenet.eval(), {**weights, **{n: gates[n] * weights[n] for n in names}}, images)
    nn.functional.cross_entropy(gated, labels).backward()
    for n in names:
        torch.testing.assert_close(scores[n], gates[n].grad.abs())


def test_grasp_is_the_weights_times_the_hessian_gradient_product(splits):
    """w * Hg against torch.func's Hessian-vector product of the temperature-scaled loss."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 10))
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    small = make_splits_like(splits, 64)
    weights = model.state_dict()
    names = ["1.weight", "3.weight"]
    scores = grasp_scores(model, weights, names, small)
    images, labels = score_sample(small)

    def loss(chosen):
        output = torch.func.functional_call(model.eval(), {**weights, **dict(zip(names, chosen))}, images)
        return nn.functional.cross_entropy(output / 200.0, labels)

    chosen = tuple(weights[n] for n in names)
    gradient = torch.func.grad(loss)(chosen)
    _, hessian_gradient = torch.func.jvp(torch.func.grad(loss), (chosen,), (gradient,))
    for n, hg in zip(names, hessian_gradient):
        torch.testing.assert_close(scores[n], weights[n] * hg, rtol=1e-4, atol=1e-9)


def make_splits_like(splits, pixels: int):
    """The same examples, each image cropped to its first `pixels` values (for a small dense net)."""
    crop = {"train_images": splits.train_images.flatten(1)[:, :pixels].reshape(-1, 1, 8, pixels // 8)}
    return type(splits)(**{**splits.__dict__, **crop})


def test_synflow_is_the_closed_form_flow_and_its_iterations_keep_the_counts():
    """Two bias-free layers: with |W1|, |W2| and an all-ones input, R = 1'|W2||W1|1, so the
    score of W1[i, j] is |W1[i, j]| * sum_k |W2[k, i]| and of W2[k, i] is |W2[k, i]| * sum_j
    |W1[i, j]|. Iterated, it keeps each entry's count (or their total) and, inverted, others."""
    model = small_net()
    weights = model.state_dict()
    w1, w2 = weights["1.weight"].abs().double(), weights["3.weight"].abs().double()
    scores = synflow_scores(model, weights, ["1.weight", "3.weight"], (1, 2, 2))
    torch.testing.assert_close(scores["1.weight"], w1 * w2.sum(0)[:, None])
    torch.testing.assert_close(scores["3.weight"], w2 * w1.sum(1)[None, :])
    counts = {"1.weight": 4, "3.weight": 3}
    images = torch.ones((20, 1, 2, 2))
    labels = torch.arange(20) % 2
    shaped = Splits(images, labels, images, labels, images, labels)
    kept = init_mask("synflow", model, weights, counts, shaped)
    assert kept.alive() == counts
    assert sum(init_mask("synflow", model, weights, counts, shaped, overall=True).alive().values()) == 7
    inverted = init_mask("synflow", model, weights, counts, shaped, invert=True)
    assert inverted.alive() == counts and not torch.equal(inverted["1.weight"], kept["1.weight"])


def test_every_control_keeps_the_tickets_counts_and_the_ablations_do_what_they_say(lenet, splits):
    torch.manual_seed(0)
    mask = Mask({n: (torch.rand_like(m) < 0.2).float() for n, m in Mask.ones(lenet).items()})
    ticket = Ticket(mask, fresh_weights(lenet, 1), seed=0, round=2)
    for kind in CONTROLS:
        variant = ticket.variant(kind, lenet, splits)
        assert variant.mask.alive() == mask.alive(), kind
        assert variant.seed == 0 and variant.round == 2
    for method in ("magnitude_init", "snip", "grasp", "synflow"):
        chosen = ticket.variant(method, lenet, splits)
        assert chosen.weights is ticket.weights
        again = ticket.variant(method, lenet, splits).mask
        assert all(torch.equal(again[n], chosen.mask[n]) for n in mask)  # deterministic
        reinit = ticket.variant(f"{method}_reinit", lenet, splits)
        assert all(torch.equal(reinit.mask[n], chosen.mask[n]) for n in mask)
        assert not torch.equal(reinit.weights["1.weight"], ticket.weights["1.weight"])
        shuffled = ticket.variant(f"{method}_shuffle", lenet, splits)
        assert not torch.equal(shuffled.mask["1.weight"], chosen.mask["1.weight"])
        inverted = ticket.variant(f"{method}_invert", lenet, splits)
        overlap = sum(int((inverted.mask[n] * chosen.mask[n]).sum()) for n in mask)
        # one-shot at 20% density: the lowest-scored fifth and the highest-scored fifth are disjoint;
        # SynFlow rescores as it prunes, so its inverted pick shares fewer weights with its pick
        # than a random mask of those counts would, by more than five of chance's sds (measured: 5,052 of 10,649)
        chance = sum(float(chosen.mask[n].sum() * inverted.mask[n].sum() / chosen.mask[n].numel()) for n in mask)
        assert overlap == 0 if method != "synflow" else overlap < chance - 5 * chance**0.5, (method, overlap, chance)
    overall = ticket.variant("snip", lenet, splits, counts="global").mask
    assert sum(overall.alive().values()) == sum(mask.alive().values())
    assert overall.alive() != mask.alive()


def test_mask_one_actions_reshuffle_or_sign_the_survivors(lenet, splits):
    torch.manual_seed(1)
    mask = Mask({n: (torch.rand_like(m) < 0.3).float() for n, m in Mask.ones(lenet).items()})
    ticket = Ticket(mask, fresh_weights(lenet, 1), seed=0, round=1)
    reshuffled = ticket.variant("reshuffle", lenet, splits)
    constant = ticket.variant("signed_constant", lenet, splits)
    for n, m in mask.items():
        alive = m.bool()
        before, after = ticket.weights[n][alive], reshuffled.weights[n][alive]
        assert torch.equal(before.sort().values, after.sort().values) and not torch.equal(before, after)
        signed = constant.weights[n][alive]
        torch.testing.assert_close(signed.abs(), torch.full_like(signed, ticket.weights[n].std().item()))
        assert torch.equal(signed.sign(), before.sign())
    assert torch.equal(reshuffled.weights["1.bias"], ticket.weights["1.bias"])  # not masked: kept


def test_controls_train_beside_tickets_with_a_mask_criterion(tmp_path):
    """Real IMP on digits5k: each new control trains at the ticket's counts and above chance; a
    ticket found by movement differs from one found by large_final."""
    controls = ("snip", "grasp", "synflow", "snip_invert", "reshuffle", "signed_constant")
    config = ExperimentConfig(
        name="init",
        dataset="digits5k",
        num_train=500,
        val_size=200,
        rounds=1,
        iterations=150,
        eval_every=50,
        controls=controls,
        mask_criterion="movement",
        exp_root=str(tmp_path / "exp"),
        model_root=str(tmp_path / "models"),
    )
    tickets = find_tickets(config)
    rows = read_results(tmp_path / "exp" / "init" / config.run_id() / "results.csv")
    assert sorted(rows.loc[rows["round"] == 1, "kind"]) == sorted(("ticket", *controls))
    counts = Ticket.load(tickets / "seed0" / "round1.pt").mask.alive()
    for _, row in rows[rows["round"] == 1].iterrows():
        assert json.loads(row["nonzero_by_layer"]) == counts, row["kind"]
        assert row["test_acc"] > 0.3, row["kind"]  # chance is 0.1
    # a mask's accuracy before training (the supermask effect) is its curve's first point: the
    # control's own weights and mask evaluated untrained
    setting = prepare(config)
    splits = setting.splits(0)
    at_start = accuracy_at_start(rows).set_index(["kind", "round"])
    for kind in ("signed_constant", "snip"):
        variant = Ticket.load(tickets / "seed0" / "round1.pt").variant(kind, setting.template, splits)
        stack = make_stack([variant.model(setting.template)], [variant.mask])
        _, (accuracy,) = evaluate(stack, [splits.val_images], [splits.val_labels])
        assert at_start.loc[(kind, 1), "mean"] == pytest.approx(100 * accuracy, abs=1e-4)
        assert at_start.loc[(kind, 1), "seeds"] == 1
    large_final = ExperimentConfig(**{**config.__dict__, "mask_criterion": "large_final", "controls": ()})
    assert large_final.run_id() != config.run_id()
    other = Ticket.load(find_tickets(large_final) / "seed0" / "round1.pt").mask
    moved = Ticket.load(tickets / "seed0" / "round1.pt").mask
    assert other.alive() == moved.alive() and not torch.equal(other["1.weight"], moved["1.weight"])
