import pytest
import torch

from lthutils.batched import supports, train_batched
from lthutils.config import ExperimentConfig
from lthutils.data import make_splits
from lthutils.lottery import Ticket, fresh_weights
from lthutils.models import build_model
from lthutils.pruning import Mask, random_mask
from lthutils.training import train


def tickets(template, count):
    """Different masks (density 30-90%) and different initial weights per model."""
    result = []
    for k in range(count):
        dense = Mask.ones(template)
        keep = {
            name: (torch.rand(m.shape, generator=torch.Generator().manual_seed(k)) < 0.3 + 0.2 * k).float()
            for name, m in dense.items()
        }
        result.append(
            Ticket(random_mask(Mask(keep), torch.Generator().manual_seed(k)), fresh_weights(template, k), 0, 0)
        )
    return result


@pytest.mark.parametrize("optimizer_name, model", [("adam", "lenet300"), ("sgd", "fc")])
def test_batched_training_equals_one_by_one(fashion, optimizer_name, model):
    lr = 0.05 if optimizer_name == "sgd" else 1.2e-3
    config = ExperimentConfig(
        model=model, n_layers=3, n_neurons=40, optimizer=optimizer_name, lr=lr, iterations=50, eval_every=10, quiet=True
    ).resolved()
    template = build_model(config, (1, 28, 28), 10, seed=0)
    splits = [make_splits(fashion, 600, 300, seed) for seed in (0, 0, 1, 2)]  # shared and distinct data
    started = tickets(template, 4)
    one_by_one = []
    for k, ticket in enumerate(started):
        model_k = ticket.model(template)
        one_by_one.append((model_k, train(model_k, ticket.mask, splits[k], config, data_seed=k, rewind_iteration=20)))
    models = [ticket.model(template) for ticket in started]
    results = train_batched(models, [t.mask for t in started], splits, config, [0, 1, 2, 3], rewind_iteration=20)
    for (alone, expected), together, result in zip(one_by_one, models, results):
        for (name, a), b in zip(alone.named_parameters(), together.parameters()):
            assert torch.allclose(a, b, atol=1e-5), name
            assert torch.allclose(expected.rewind_state[name], result.rewind_state[name], atol=1e-5), name
        assert result.nonzero_by_layer == expected.nonzero_by_layer  # masks held in every model
        assert result.early_stop_iter == expected.early_stop_iter
        assert [h[0] for h in result.history] == [10, 20, 30, 40, 50]
        for (_, loss_b, acc_b), (_, loss_a, acc_a) in zip(result.history, expected.history):
            assert loss_b == pytest.approx(loss_a, abs=1e-5)
            assert acc_b == pytest.approx(acc_a, abs=1e-4, nan_ok=True)
        assert result.examples == expected.examples == 50 * 60


def test_only_fully_connected_models_are_batched():
    assert supports(build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0))
    assert not supports(build_model(ExperimentConfig(model="lenet5"), (1, 28, 28), 10, seed=0))
