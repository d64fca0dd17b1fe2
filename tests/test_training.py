import dataclasses

import pytest
import torch

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.lottery import Ticket, fresh_weights
from lthutils.models import build_model
from lthutils.pruning import Mask, prune_layerwise
from lthutils.training import check_mask_holds, make_optimizer, resolve_device, total_iterations, train


def half_pruned(model):
    mask = Mask.ones(model)
    weights = {name: torch.randn_like(m, generator=torch.Generator().manual_seed(1)) for name, m in mask.items()}
    return prune_layerwise(weights, mask, {name: 0.5 for name in mask})


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_pruned_weights_stay_zero_and_get_no_optimizer_state(fashion_splits, optimizer_name):
    lr = 0.05 if optimizer_name == "sgd" else 1e-3
    config = ExperimentConfig(optimizer=optimizer_name, lr=lr, iterations=200, eval_every=50, quiet=True).resolved()
    model = build_model(config, (1, 28, 28), 10, seed=0)
    mask = half_pruned(model)
    optimizer = make_optimizer(list(model.parameters()), config)
    result = train(model, mask, fashion_splits, config, data_seed=0, optimizer=optimizer)
    assert result.nonzero_by_layer == mask.alive()  # survivors trained and non-zero, pruned ones zero
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert torch.count_nonzero(params[name][m == 0]) == 0
        state = optimizer.state[params[name]]
        for buffer in ("exp_avg", "exp_avg_sq") if isinstance(optimizer, torch.optim.Adam) else ("momentum_buffer",):
            assert torch.count_nonzero(state[buffer][m == 0]) == 0, (name, buffer)
            assert torch.count_nonzero(state[buffer][m == 1]) > 0.9 * m.sum(), (name, buffer)
    assert result.iterations == 200 and [h[0] for h in result.history] == [50, 100, 150, 200]


def test_training_learns_real_data(fashion_splits):
    config = ExperimentConfig(epochs=4, eval_every=0, quiet=True).resolved()
    model = build_model(config, (1, 28, 28), 10, seed=0)
    result = train(model, Mask.ones(model), fashion_splits, config, data_seed=0)
    assert result.test_acc > 0.65  # chance is 0.10; 500 images, 4 epochs
    assert result.early_stop_iter == result.iterations == total_iterations(config, 500) == 4 * 9


def test_early_stopping_picks_least_validation_loss(fashion_splits):
    config = ExperimentConfig(iterations=120, eval_every=10, lr=0.01, quiet=True).resolved()
    model = build_model(config, (1, 28, 28), 10, seed=0)
    result = train(model, Mask.ones(model), fashion_splits, config, data_seed=0)
    best = min(result.history, key=lambda h: h[1])
    assert (result.early_stop_iter, result.test_acc_at_early_stop) == (best[0], best[2])
    assert (result.val_loss, result.test_acc) == result.history[-1][1:]


def test_same_seed_same_numbers_other_seed_other_numbers(fashion_splits):
    config = ExperimentConfig(iterations=30, eval_every=10, quiet=True).resolved()
    runs = []
    for data_seed in (0, 0, 1):
        model = build_model(config, (1, 28, 28), 10, seed=0)
        runs.append(
            (train(model, Mask.ones(model), fashion_splits, config, data_seed=data_seed).history, model[1].weight)
        )
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_rewind_state_is_the_weights_after_k_steps(fashion_splits):
    config = ExperimentConfig(iterations=5, eval_every=0, quiet=True).resolved()
    template = build_model(config, (1, 28, 28), 10, seed=0)
    ticket = Ticket(Mask.ones(template), fresh_weights(template, 0), 0, 0)
    full = train(ticket.model(template), ticket.mask, fashion_splits, config, data_seed=0, rewind_iteration=3)
    short = ticket.model(template)
    train(short, ticket.mask, fashion_splits, dataclasses.replace(config, iterations=3), data_seed=0)
    assert all(torch.equal(full.rewind_state[k], v) for k, v in short.state_dict().items())


def test_a_leak_is_caught(fashion_splits):
    model = build_model(ExperimentConfig(), (1, 28, 28), 10, seed=0)
    mask = half_pruned(model)
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    with pytest.raises(RuntimeError, match="mask leak: .* pruned weights of 1.weight"):
        check_mask_holds(model, mask)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device='cuda' is not allowed: expected an available device: cpu"):
            resolve_device("cuda")
