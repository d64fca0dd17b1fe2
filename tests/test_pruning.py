import pytest
import torch
from torch.nn.utils import prune as torch_prune

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.models import build_model
from lthutils.pruning import (
    Mask,
    criterion_scores,
    layer_rates,
    magnitude_mask,
    prunable_parameters,
    prune_global,
    prune_layerwise,
    prune_with,
    random_mask,
    register_prune_function,
)


@pytest.fixture
def lenet():
    return build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)


def weights_of(model, mask):
    return {name: p for name, p in model.named_parameters() if name in mask}


def test_mask_refuses_anything_but_zero_one():
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        Mask({"w": torch.tensor([0.0, 0.5])})
    mask = Mask({"w": torch.ones(3)})
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        mask["w"] = torch.tensor([2.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"has shape \(2,\), not \(3,\)"):
        mask["w"] = torch.ones(2)
    with pytest.raises(TypeError):
        Mask({"w": [0, 1]})
    assert Mask({"w": torch.tensor([True, False])})["w"].dtype == torch.float32


def test_mask_check_fits_names_the_mismatch(lenet):
    conv = build_model(ExperimentConfig(model="lenet5"), (1, 28, 28), 10, seed=0)
    with pytest.raises(ConfigError, match=r"ticket='1.weight of shape \(300, 784\)'.*1.weight: no such parameter"):
        Mask.ones(lenet).check_fits(conv)
    Mask.ones(lenet).check_fits(lenet)


def test_prunable_parameters_skip_biases_by_default(lenet):
    assert list(prunable_parameters(lenet)) == ["1.weight", "3.weight", "5.weight"]
    assert len(prunable_parameters(lenet, prune_biases=True)) == 6


@pytest.mark.parametrize(
    "rate, after_three_rounds",
    [
        # 235200 -> 188160 -> 150528 -> 120422; 30000 -> 24000 -> 19200 -> 15360; 1000 -> 900 -> 810 -> 729
        (0.2, {"1.weight": 120422, "3.weight": 15360, "5.weight": 729}),
        # 235200 -> 152880 -> 99372 -> 64592; 30000 -> 19500 -> 12675 -> 8239; 1000 -> 825 -> 681 -> 562
        (0.35, {"1.weight": 64592, "3.weight": 8239, "5.weight": 562}),
    ],
)
def test_layerwise_counts_are_exact_over_rounds(lenet, rate, after_three_rounds):
    mask = Mask.ones(lenet)
    rates = layer_rates(lenet, mask, fc=rate, conv=0.1, output=rate / 2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        _move_both([lenet], generator)
        mask = prune_layerwise(weights_of(lenet, mask), mask, rates)
    assert mask.alive() == after_three_rounds


def test_global_counts_are_exact(lenet):
    mask = Mask.ones(lenet)
    for expected in (186340, 130438, 91307, 63915):  # 266200 losing round(30%) four times
        mask = prune_global(weights_of(lenet, mask), mask, 0.3)
        assert sum(mask.alive().values()) == expected


def _move_both(models, generator):
    """The same weight change in both models, as a training step would make between rounds."""
    with torch.no_grad():
        for index in (1, 3, 5):
            step = 0.05 * torch.randn(models[0][index].weight.shape, generator=generator)
            for model in models:  # torch.nn.utils.prune keeps the parameter as weight_orig
                getattr(model[index], "weight_orig", model[index].weight).add_(step)
        for model in models:
            model(torch.zeros(1, 1, 28, 28))  # a forward pass refreshes torch's pruned `weight`


def test_layerwise_equals_torch_l1_unstructured(lenet):
    oracle = build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)
    mask = Mask.ones(lenet)
    generator = torch.Generator().manual_seed(0)
    for round_index in range(3):
        _move_both([lenet, oracle], generator)
        masked = {name: p * mask[name] for name, p in weights_of(lenet, mask).items()}
        mask = prune_layerwise(masked, mask, {name: 0.2 for name in mask})
        for index in (1, 3, 5):
            torch_prune.l1_unstructured(oracle[index], "weight", amount=0.2)
            assert torch.equal(oracle[index].weight_mask, mask[f"{index}.weight"]), (round_index, index)


def test_global_equals_torch_global_unstructured(lenet):
    oracle = build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)
    mask = Mask.ones(lenet)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        _move_both([lenet, oracle], generator)
        masked = {name: p * mask[name] for name, p in weights_of(lenet, mask).items()}
        mask = prune_global(masked, mask, 0.25)
        torch_prune.global_unstructured(
            [(oracle[i], "weight") for i in (1, 3, 5)], pruning_method=torch_prune.L1Unstructured, amount=0.25
        )
        for index in (1, 3, 5):
            assert torch.equal(oracle[index].weight_mask, mask[f"{index}.weight"])


def test_ties_go_to_the_lower_index():
    weights = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0, 0.5])}
    mask = prune_layerwise(weights, Mask({"w": torch.ones(6)}), {"w": 0.5})
    assert mask["w"].tolist() == [0, 0, 1, 1, 1, 0]
    again = prune_global(weights, mask, 0.34)  # 3 alive -> 1 pruned: the lower-index 1.0
    assert again["w"].tolist() == [0, 0, 0, 1, 1, 0]


def test_pruned_weights_are_never_chosen_again():
    weights = {"w": torch.tensor([0.0, 0.0, 3.0, 4.0])}
    mask = Mask({"w": torch.tensor([0.0, 0.0, 1.0, 1.0])})
    assert prune_layerwise(weights, mask, {"w": 0.5})["w"].tolist() == [0, 0, 0, 1]


def test_random_mask_keeps_per_layer_counts(lenet):
    mask = prune_layerwise(weights_of(lenet, Mask.ones(lenet)), Mask.ones(lenet), {n: 0.6 for n in Mask.ones(lenet)})
    shuffled = random_mask(mask, torch.Generator().manual_seed(0))
    assert shuffled.alive() == mask.alive()
    assert not torch.equal(shuffled["1.weight"], mask["1.weight"])
    assert torch.equal(shuffled["1.weight"], random_mask(mask, torch.Generator().manual_seed(0))["1.weight"])


def test_magnitude_mask_keeps_the_largest_initial_weights_at_the_same_counts(lenet):
    weights = weights_of(lenet, Mask.ones(lenet))
    mask = random_mask(
        prune_layerwise(weights, Mask.ones(lenet), {n: 0.7 for n in Mask.ones(lenet)}), torch.Generator().manual_seed(3)
    )
    at_init = magnitude_mask(mask, weights)
    assert at_init.alive() == mask.alive()
    for name, kept in at_init.items():
        magnitudes = weights[name].abs()
        assert magnitudes[kept == 1].min() >= magnitudes[kept == 0].max()  # every survivor outranks every pruned one
    assert magnitude_mask(Mask({"w": torch.tensor([1.0, 1.0, 0.0])}), {"w": torch.tensor([0.1, -3.0, 2.0])})[
        "w"
    ].tolist() == [0, 1, 1]


def prune_first_layer_only(weights, mask, rate):
    """A user's prune function: magnitude pruning of the first layer alone."""
    first = next(iter(mask))
    return {**mask, first: prune_layerwise(weights, Mask({first: mask[first]}), {first: rate})[first]}


@pytest.mark.parametrize(
    "returned, allowed",
    [
        (lambda mask: {"1.weight": mask["1.weight"]}, r"a mask over \['1.weight', '3.weight', '5.weight'\]"),
        (lambda mask: {**mask, "3.weight": torch.ones(3)}, r"3.weight of shape \(100, 300\) \(it returned \(3,\)\)"),
        (lambda mask: {**mask, "5.weight": mask["5.weight"] / 2}, "a mask of 0s and 1s"),
        (lambda mask: {name: torch.ones_like(m) for name, m in mask.items()}, "a mask that keeps pruned weights"),
    ],
)
def test_a_prune_function_must_return_a_mask_that_fits(lenet, returned, allowed):
    register_prune_function("faulty", lambda weights, mask, rate: returned(mask))
    mask = prune_layerwise(weights_of(lenet, Mask.ones(lenet)), Mask.ones(lenet), {n: 0.2 for n in Mask.ones(lenet)})
    refused = f"prune_scope='faulty' is not allowed: expected a function returning {allowed}"
    with pytest.raises(ConfigError, match=refused):
        prune_with("faulty", weights_of(lenet, mask), mask, 0.2)


def test_prune_functions_by_registered_name_or_module_path(lenet):
    register_prune_function("first_only", prune_first_layer_only)
    mask = Mask.ones(lenet)
    for name in ("first_only", "test_pruning:prune_first_layer_only"):
        new = prune_with(name, weights_of(lenet, mask), mask, 0.5)
        assert new.alive() == {"1.weight": 117_600, "3.weight": 30_000, "5.weight": 1000}
    assert ExperimentConfig(prune_scope=prune_first_layer_only).prune_scope == "test_pruning:prune_first_layer_only"
    assert ExperimentConfig(prune_scope="first_only").run_id() != ExperimentConfig(prune_scope="layerwise").run_id()
    with pytest.raises(ConfigError, match="prune_scope='largest' is not allowed: expected one of layerwise, global"):
        ExperimentConfig(prune_scope="largest")
    with pytest.raises(ConfigError, match="prune function name='global' is not allowed"):
        register_prune_function("global", prune_first_layer_only)


def test_mask_criteria_score_the_start_and_end_of_a_round():
    """Zhou et al.'s criteria on known weights: magnitude_increase |w_f| - |w_i|, movement
    |w_f - w_i|; large_final is the pruning functions' default (None)."""
    initial = {"w": torch.tensor([1.0, -2.0, 0.5, 0.1])}
    final = {"w": torch.tensor([-3.0, -1.0, 0.5, 0.0])}
    mask = Mask({"w": torch.ones(4)})
    assert criterion_scores("large_final", initial, final, mask) is None
    increase = criterion_scores("magnitude_increase", initial, final, mask)["w"]
    assert increase.tolist() == pytest.approx([2.0, -1.0, 0.0, -0.1])
    assert criterion_scores("movement", initial, final, mask)["w"].tolist() == pytest.approx([4.0, 1.0, 0.0, 0.1])
    # magnitude_increase prunes the weight that shrank most, which |w_f| would have kept
    assert prune_layerwise(final, mask, {"w": 0.25}, {"w": increase})["w"].tolist() == [1, 0, 1, 1]
    assert prune_layerwise(final, mask, {"w": 0.25})["w"].tolist() == [1, 1, 1, 0]


def test_large_init_large_final_keeps_the_weights_large_at_both_ends():
    """The kept weights are those above one percentile of |w_i| and |w_f| at once (the quadrant),
    and counts stay exact; pruned weights stay pruned."""
    generator = torch.Generator().manual_seed(0)
    initial = {"w": torch.randn(400, generator=generator)}
    final = {"w": initial["w"] + 0.8 * torch.randn(400, generator=generator)}
    alive = torch.ones(400)
    alive[:40] = 0
    mask = Mask({"w": alive})
    scores = criterion_scores("large_init_large_final", initial, final, mask)
    kept = prune_layerwise(final, mask, {"w": 0.5}, scores)["w"].bool()
    assert int(kept.sum()) == 360 - 180 and not kept[:40].any()
    smallest_kept = [w.abs()[kept].min() for w in (initial["w"], final["w"])]
    # every alive weight left out is below the kept set's floor at one end or the other
    for index in torch.nonzero(alive.bool() & ~kept).flatten().tolist():
        assert any(bool(w.abs()[index] < floor) for w, floor in zip((initial["w"], final["w"]), smallest_kept))
