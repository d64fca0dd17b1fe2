import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.models import build_model
from lthutils.pruning import Mask, layer_rates, prunable_parameters, prune_global, prune_layerwise, random_mask


@pytest.fixture
def lenet():
    return build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)


def weights_of(model, mask):
    return {name: p for name, p in model.named_parameters() if name in mask}


def test_mask_refuses_anything_but_zero_one():
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        Mask({"w": torch.tensor([0.0, 0.5])})
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


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.35, 0.5])
def test_layerwise_counts_are_exact_over_rounds(lenet, rate):
    mask = Mask.ones(lenet)
    rates = layer_rates(lenet, mask, fc=rate, conv=0.1, output=rate / 2)
    expected = {name: m.numel() for name, m in mask.items()}
    for _ in range(5):
        torch.nn.init.normal_(lenet[1].weight)  # fresh "trained" weights each round
        mask = prune_layerwise(weights_of(lenet, mask), mask, rates)
        expected = {name: alive - round(rates[name] * alive) for name, alive in expected.items()}
        assert mask.alive() == expected
    assert mask.alive()["5.weight"] > mask.alive()["1.weight"] * 1000 / 235200  # output pruned slower


def test_global_counts_are_exact(lenet):
    mask = Mask.ones(lenet)
    total = sum(mask.alive().values())
    for _ in range(4):
        mask = prune_global(weights_of(lenet, mask), mask, 0.3)
        total -= round(0.3 * total)
        assert sum(mask.alive().values()) == total


def test_layerwise_equals_torch_l1_unstructured(lenet, fashion_splits):
    oracle = build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)
    mask = Mask.ones(lenet)
    for round_index in range(3):
        with torch.no_grad():  # same real-data-shaped weights in both: a gradient step on real images
            for model in (lenet, oracle):
                model.zero_grad()
            loss = nn.functional.cross_entropy(
                lenet(fashion_splits.train_images[:100]), fashion_splits.train_labels[:100]
            )
        mask = prune_layerwise(weights_of(lenet, mask), mask, {name: 0.2 for name in mask})
        for index in (1, 3, 5):
            torch_prune.l1_unstructured(oracle[index], "weight", amount=0.2)
            assert torch.equal(oracle[index].weight_mask, mask[f"{index}.weight"]), (round_index, index)
        assert loss.item() > 0


def test_global_equals_torch_global_unstructured(lenet):
    oracle = build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0)
    mask = Mask.ones(lenet)
    for _ in range(3):
        mask = prune_global(weights_of(lenet, mask), mask, 0.25)
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
