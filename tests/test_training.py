import dataclasses
import math

import pytest
import torch

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.data import Splits, make_splits
from lthutils.lottery import Ticket, fresh_weights
from lthutils.models import build_model
from lthutils.pruning import Mask, prune_layerwise, random_mask
from lthutils.training import (
    SingleModule,
    StackedLinear,
    check_mask_holds,
    evaluate,
    make_optimizer,
    make_schedule,
    make_stack,
    resolve_device,
    stackable,
    total_iterations,
    train,
    train_models,
    train_stack,
)


def half_pruned(model):
    mask = Mask.ones(model)
    weights = {name: torch.randn_like(m, generator=torch.Generator().manual_seed(1)) for name, m in mask.items()}
    return prune_layerwise(weights, mask, {name: 0.5 for name in mask})


def tickets(template, count):
    """Different masks (density 30-90%) and different initial weights per model."""
    result = []
    for k in range(count):
        dense = Mask.ones(template)
        keep = {
            name: (torch.rand(m.shape, generator=torch.Generator().manual_seed(k)) < 0.3 + 0.15 * k).float()
            for name, m in dense.items()
        }
        result.append(
            Ticket(random_mask(Mask(keep), torch.Generator().manual_seed(k)), fresh_weights(template, k), 0, 0)
        )
    return result


@pytest.mark.parametrize(
    "optimizer_name, model, precision",
    [("adam", "lenet300", "fp32"), ("sgd", "lenet300", "bf16"), ("adam", "lenet5", "bf16"), ("sgd", "lenet5", "fp32")],
)
def test_pruned_weights_stay_zero_and_get_no_optimizer_state(fashion_splits, optimizer_name, model, precision):
    lr = 0.05 if optimizer_name == "sgd" else 1e-3
    config = ExperimentConfig(
        model=model, optimizer=optimizer_name, lr=lr, iterations=120, eval_every=40, precision=precision, quiet=True
    ).resolved()
    network = build_model(config, (1, 28, 28), 10, seed=0)
    mask = half_pruned(network)
    stack = make_stack([network], [mask], precision)
    optimizer = make_optimizer(stack.leaves, config)
    (result,) = train_stack(stack, optimizer, [fashion_splits], config, [0])
    stack.write_back()
    result.finish(network, mask)
    assert result.nonzero_by_layer == mask.alive()  # survivors trained and non-zero, pruned ones zero
    for leaf, leaf_mask in zip(stack.masked_leaves, stack.leaf_masks):
        assert torch.count_nonzero(leaf.detach()[leaf_mask == 0]) == 0
        state = optimizer.state[leaf]
        for buffer in ("exp_avg", "exp_avg_sq") if isinstance(optimizer, torch.optim.Adam) else ("momentum_buffer",):
            assert torch.count_nonzero(state[buffer][leaf_mask == 0]) == 0, buffer
            assert torch.count_nonzero(state[buffer][leaf_mask == 1]) > 0.5 * leaf_mask.sum(), buffer  # survivors
    assert result.iterations == 120 and [h[0] for h in result.history] == [40, 80, 120]
    assert [point[0] for point in result.curve] == [0, 40, 80, 120]  # the curve starts before training
    assert [point[1] for point in result.curve[1:]] == [loss for _, loss in result.history]
    assert result.curve[0][2] < 0.3 < 0.5 < result.curve[-1][2]  # validation accuracy: near chance, then learned
    assert result.test_acc > 0.5  # real data, chance is 0.1


def test_training_learns_real_data(fashion_splits):
    config = ExperimentConfig(epochs=4, eval_every=0, quiet=True).resolved()
    model = build_model(config, (1, 28, 28), 10, seed=0)
    result = train(model, Mask.ones(model), fashion_splits, config, data_seed=0)
    assert result.test_acc > 0.65  # chance is 0.10; 500 images, 4 epochs
    assert result.early_stop_iter == result.iterations == total_iterations(config, 500) == 4 * 9
    assert result.test_acc_at_early_stop == result.test_acc


@pytest.mark.parametrize("model", ["lenet300", "lenet5", "cifar_resnet_8_4"])
def test_early_stopping_snapshot_equals_evaluating_at_that_step(fashion_splits, model):
    """The test accuracy at early stop, measured once at the end on the kept weights, is what
    evaluating the test set at that step gives: the same run cut short at that step (for a
    batch-norm model, the snapshot holds the running statistics of that step too)."""
    lr = 0.3 if model.startswith("cifar") else 0.01  # SGD with momentum for the ResNet, Adam for the others
    config = ExperimentConfig(model=model, iterations=150, eval_every=10, lr=lr, quiet=True).resolved()
    template = build_model(config, (1, 28, 28), 10, seed=0)
    result = train(template, Mask.ones(template), fashion_splits, config, data_seed=0)
    best = min(result.history, key=lambda h: h[1])
    assert (result.early_stop_iter, result.best_val_loss) == best and result.val_loss == result.history[-1][1]
    assert 0 < result.early_stop_iter < 150  # lr 0.01 overfits 500 images: the snapshot is not the end

    def accuracy_after(steps: int) -> float:
        model = build_model(config, (1, 28, 28), 10, seed=0)
        train(model, Mask.ones(model), fashion_splits, dataclasses.replace(config, iterations=steps), data_seed=0)
        stack = make_stack([model], [Mask.ones(model)])
        return evaluate(stack, [fashion_splits.test_images], [fashion_splits.test_labels])[1][0]

    assert result.test_acc_at_early_stop == accuracy_after(result.early_stop_iter)
    assert result.test_acc == accuracy_after(150)


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


@pytest.mark.parametrize(
    "optimizer_name, model, precision, augment",
    [
        ("adam", "lenet300", "fp32", "none"),
        ("sgd", "fc", "fp32", "crop_flip"),
        ("adam", "fc", "bf16", "none"),
        ("sgd", "lenet300", "bf16", "none"),
    ],
)
def test_a_model_trains_the_same_alone_or_in_any_stack(fashion, optimizer_name, model, precision, augment):
    """Bitwise: model 0 trained alone equals model 0 trained beside 1 or 4 others (other masks,
    weights and data) and alone on another number of threads, so grouping, scheduling, resuming
    and a worker's thread count cannot change a run's numbers."""
    lr = 0.05 if optimizer_name == "sgd" else 1.2e-3
    config = ExperimentConfig(
        model=model,
        n_layers=1,
        n_neurons=10,
        optimizer=optimizer_name,
        lr=lr,
        iterations=40,
        eval_every=10,
        augment=augment,
    )
    config = dataclasses.replace(config, precision=precision, quiet=True).resolved()
    template = build_model(config, (1, 28, 28), 10, seed=0)
    # 130 images: a short last batch. Models 0 and 1 share one split object (as a ticket and its
    # reinit do), so stacks of 2 and 5 evaluate shared data as a broadcast view and mixed data stacked.
    shared = make_splits(fashion, 130, 300, 0)
    splits = [shared, shared] + [make_splits(fashion, 130, 300, seed) for seed in (1, 2, 3)]
    started = tickets(template, 5)
    runs = []
    threads = torch.get_num_threads()
    for count, run_threads in ((1, threads), (2, threads), (5, threads), (1, 1 if threads > 1 else 2)):
        models = [ticket.model(template) for ticket in started[:count]]
        masks = [ticket.mask for ticket in started[:count]]
        torch.set_num_threads(run_threads)  # the last run alone on another thread count
        try:
            results = train_models(models, masks, splits[:count], config, list(range(count)), rewind_iteration=7)
        finally:
            torch.set_num_threads(threads)
        runs.append((models, results))
    (alone, (first,)) = runs[0]
    for models, results in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(alone[0].parameters(), models[0].parameters()))
        assert results[0].history == first.history
        assert results[0].rewind_state.keys() == first.rewind_state.keys()
        assert all(torch.equal(results[0].rewind_state[n], first.rewind_state[n]) for n in first.rewind_state)
        assert results[0].test_acc == first.test_acc
        assert results[0].test_acc_at_early_stop == first.test_acc_at_early_stop
    models, results = runs[2]  # the stack of 5
    for ticket, result in zip(started, results):
        assert result.nonzero_by_layer == ticket.mask.alive()  # every model's mask held
        assert result.examples == 13 * 130 + 60  # 130 images: epochs of 3 steps (60, 60, 10), 40 steps


def to_double(splits: Splits) -> Splits:
    tensors = {f.name: getattr(splits, f.name) for f in dataclasses.fields(splits)}
    return Splits(**{name: t.double() if t.is_floating_point() else t for name, t in tensors.items()})


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_stacked_and_single_training_match_a_float64_reference(fashion_splits, optimizer_name):
    """The stacked layout rounds differently from nn.Linear, so neither is the other's oracle:
    both must stay close to the same training done in float64."""
    lr = 0.05 if optimizer_name == "sgd" else 1.2e-3
    config = ExperimentConfig(optimizer=optimizer_name, lr=lr, iterations=50, eval_every=0, quiet=True).resolved()
    template = build_model(config, (1, 28, 28), 10, seed=0)
    (ticket,) = tickets(template, 1)
    trained = {}
    for name, precision in (("stacked", torch.float32), ("single", torch.float32), ("reference", torch.float64)):
        model = ticket.model(template).to(precision)
        mask = Mask({n: m.to(precision) for n, m in ticket.mask.items()})
        splits = fashion_splits if precision == torch.float32 else to_double(fashion_splits)
        stack = StackedLinear([model], [mask], "fp32") if name == "stacked" else SingleModule(model, mask, "fp32")
        train_stack(stack, make_optimizer(stack.leaves, config), [splits], config, [0])
        stack.write_back()
        trained[name] = dict(model.named_parameters())
    for name, reference in trained["reference"].items():
        for layout in ("stacked", "single"):
            error = (trained[layout][name].double() - reference).abs().max().item()
            assert error < 2e-5, (layout, name, error)
        assert not torch.equal(trained["stacked"][name], trained["single"][name].to(reference.dtype).float())


def test_bf16_stays_close_to_fp32_and_holds_masks(fashion_splits):
    config = ExperimentConfig(epochs=4, eval_every=9, quiet=True).resolved()
    template = build_model(config, (1, 28, 28), 10, seed=0)
    mask = half_pruned(template)
    accuracy = {}
    for precision in ("fp32", "bf16"):
        model = Ticket(mask, fresh_weights(template, 0), 0, 0).model(template)
        result = train(model, mask, fashion_splits, dataclasses.replace(config, precision=precision), data_seed=0)
        assert result.nonzero_by_layer == mask.alive() and check_mask_holds(model, mask) == mask.alive()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        accuracy[precision] = result.test_acc
    assert accuracy["bf16"] != accuracy["fp32"]  # the products did run in another precision
    assert abs(accuracy["bf16"] - accuracy["fp32"]) < 0.02


def test_only_fully_connected_models_stack():
    assert stackable(build_model(ExperimentConfig(model="lenet300"), (1, 28, 28), 10, seed=0))
    lenet5 = build_model(ExperimentConfig(model="lenet5"), (1, 28, 28), 10, seed=0)
    assert not stackable(lenet5)
    with pytest.raises(ValueError, match="only fully connected models train stacked"):
        make_stack([lenet5, lenet5], [Mask.ones(lenet5)] * 2)


def test_a_leak_is_caught(fashion_splits):
    model = build_model(ExperimentConfig(), (1, 28, 28), 10, seed=0)
    mask = half_pruned(model)
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    with pytest.raises(RuntimeError, match="mask leak: .* pruned weights of 1.weight"):
        check_mask_holds(model, mask)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_device_resolution(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type == expected
    if not cuda:
        allowed = "cpu, mps" if mps else "cpu"
        with pytest.raises(
            ConfigError, match=f"device='cuda' is not allowed: expected an available device: {allowed}$"
        ):
            resolve_device("cuda")


def test_converged_flags_an_early_stop_and_a_run_still_improving(fashion_splits):
    """A run whose least validation loss comes before its end converged; one that is still
    improving at its last evaluation, or evaluated only at the end, did not."""
    config = ExperimentConfig(iterations=150, eval_every=10, lr=0.01, quiet=True).resolved()
    model = build_model(config, (1, 28, 28), 10, seed=0)
    overfits = train(model, Mask.ones(model), fashion_splits, config, data_seed=0)
    assert 0 < overfits.early_stop_iter < 150 and overfits.converged  # lr 0.01 overfits 500 images
    slow = dataclasses.replace(config, lr=1e-5, iterations=30)
    model = build_model(slow, (1, 28, 28), 10, seed=0)
    crawling = train(model, Mask.ones(model), fashion_splits, slow, data_seed=0)
    assert crawling.early_stop_iter == 30 and not crawling.converged
    once = dataclasses.replace(config, eval_every=0)
    model = build_model(once, (1, 28, 28), 10, seed=0)
    assert not train(model, Mask.ones(model), fashion_splits, once, data_seed=0).converged


@pytest.mark.parametrize("warmup, augment", [(0, "none"), (12, "none"), (0, "crop_flip")])
def test_training_from_the_rewind_step_replays_the_rest_of_the_run(fashion_splits, warmup, augment):
    """With a stateless optimizer (SGD without momentum), training the rewind state for steps
    k+1..T (first_step=k) lands bitwise where the uninterrupted T-step run lands, the learning
    rate schedule and the batches' crops and flips included."""
    config = ExperimentConfig(
        optimizer="sgd",
        momentum=0.0,
        lr=0.05,
        iterations=25,
        eval_every=5,
        warmup_iterations=warmup,
        augment=augment,
        quiet=True,
    )
    config = config.resolved()
    whole = build_model(config, (1, 28, 28), 10, seed=0)
    full = train(whole, Mask.ones(whole), fashion_splits, config, data_seed=3, rewind_iteration=7)
    rest = build_model(config, (1, 28, 28), 10, seed=0)
    rest.load_state_dict(full.rewind_state)
    resumed = train(rest, Mask.ones(rest), fashion_splits, config, data_seed=3, first_step=7)
    assert resumed.iterations == 25 - 7 and resumed.examples == 1420 - 420  # steps 8-25 of epochs of 500 images
    assert [step for step, _ in resumed.history] == [10, 15, 20, 25]
    for name, weight in whole.state_dict().items():
        assert torch.equal(weight, rest.state_dict()[name]), name


def test_crop_flip_changes_the_batches_and_still_learns(fashion_splits):
    config = ExperimentConfig(iterations=60, eval_every=0, quiet=True)
    accuracies = {}
    for augment in ("none", "crop_flip"):
        resolved = dataclasses.replace(config, augment=augment).resolved()
        model = build_model(resolved, (1, 28, 28), 10, seed=0)
        accuracies[augment] = train(model, Mask.ones(model), fashion_splits, resolved, data_seed=0).test_acc
    assert accuracies["crop_flip"] != accuracies["none"]
    assert accuracies["crop_flip"] > 0.5  # 10 classes: chance is 0.1
    assert ExperimentConfig(dataset="cifar10").resolved().augment == "crop_flip"
    assert ExperimentConfig(dataset="svhn").resolved().augment == "none"
    assert "augment" not in ExperimentConfig(dataset="mnist").identity()  # earlier run ids unchanged
    with pytest.raises(ConfigError, match="augment='flip' is not allowed: expected one of none, crop_flip"):
        ExperimentConfig(augment="flip")


def test_learning_rate_schedules():
    """one_cycle is torch's OneCycleLR over the run (peak lr at 30%, momentum cycled the other way);
    warmup rises linearly to lr over its steps, then holds."""
    weight = torch.zeros(3, requires_grad=True)

    def trace(**options):
        config = ExperimentConfig(optimizer="sgd", lr=0.1, iterations=100, **options).resolved()
        optimizer = make_optimizer([weight], config)
        schedule = make_schedule(optimizer, config, 100)
        lrs, momenta = [], []
        for _ in range(100):
            lrs.append(optimizer.param_groups[0]["lr"])
            momenta.append(optimizer.param_groups[0]["momentum"])
            optimizer.step()
            if schedule is not None:
                schedule.step()
        return lrs, momenta

    lrs, momenta = trace(lr_schedule="one_cycle")
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 29
    assert lrs[-1] < 1e-5 and min(momenta) == pytest.approx(0.85) and momenta.index(min(momenta)) == 29
    lrs, momenta = trace(warmup_iterations=10)
    assert lrs[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)]) and set(lrs[10:]) == {0.1}
    assert set(momenta) == {0.9}
    assert trace() == ([0.1] * 100, [0.9] * 100)
    lrs, _ = trace(lr_schedule="step", lr_milestones=(0.5, 0.75))  # OpenLTH's 80 and 120 of 160 epochs
    assert lrs == pytest.approx([0.1] * 50 + [0.01] * 25 + [0.001] * 25)
    lrs, _ = trace(lr_schedule="step", lr_milestones=(0.3,), lr_gamma=0.5, warmup_iterations=10)
    assert lrs[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)]) and lrs[10:] == pytest.approx(
        [0.1] * 20 + [0.05] * 70
    )
    lrs, _ = trace(lr_schedule="cosine")
    assert (
        lrs[0] == 0.1
        and lrs[50] == pytest.approx(0.05)
        and lrs[99] == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.99)) / 2)
    )
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    for field, value, allowed in (
        ("lr_milestones", (0.75, 0.5), "increasing fractions"),
        ("lr_milestones", (0.5, 1.0), "increasing fractions"),
        ("lr_gamma", 0.0, "a factor in"),
        ("weight_decay", -1e-4, "a non-negative number"),
    ):
        with pytest.raises(ConfigError, match=f"{field}=.* is not allowed: expected {allowed}"):
            ExperimentConfig(**{field: value})
    constant = ExperimentConfig(lr_milestones=(0.2,))
    assert constant.run_id() == ExperimentConfig().run_id()  # milestones without the step schedule change nothing
    assert ExperimentConfig(weight_decay=0.0).run_id() == ExperimentConfig().run_id()  # earlier run ids unchanged


def test_weight_decay_shrinks_the_alive_weights_and_never_revives_pruned_ones(fashion_splits):
    config = ExperimentConfig(optimizer="sgd", lr=0.05, iterations=30, eval_every=0, quiet=True)
    norms = {}
    for decay in (0.0, 0.05):
        resolved = dataclasses.replace(config, weight_decay=decay).resolved()
        model = build_model(resolved, (1, 28, 28), 10, seed=0)
        mask = half_pruned(model)
        result = train(model, mask, fashion_splits, resolved, data_seed=0)
        assert result.nonzero_by_layer == mask.alive()  # exactly the alive weights are non-zero
        norms[decay] = sum(float(p.detach().norm()) for name, p in model.named_parameters() if name in mask)
    assert norms[0.05] < norms[0.0]


def test_summed_loss_is_the_mean_loss_with_a_batch_times_larger_rate(fashion_splits):
    """SGD on the batch's summed loss steps exactly as on its mean loss at batch_size times the rate
    (500 examples in full batches of 50; up to float rounding)."""
    common = dict(model="fc", n_layers=1, n_neurons=20, optimizer="sgd", batch_size=50, iterations=30, quiet=True)
    summed = ExperimentConfig(**common, lr=0.002, loss_reduction="sum").resolved()
    mean = ExperimentConfig(**common, lr=0.1).resolved()
    models = [build_model(config, (1, 28, 28), 10, seed=0) for config in (summed, mean)]
    results = [
        train(model, Mask.ones(model), fashion_splits, config, 0) for model, config in zip(models, (summed, mean))
    ]
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert results[0].test_acc == pytest.approx(results[1].test_acc, abs=0.002) and results[0].test_acc > 0.5


def test_train_seconds_leave_out_the_evaluation_before_training(fashion_splits):
    """One step between two evaluations of 500 images: the step's time is what is left of the
    run's elapsed time once the evaluations are taken out, so it is positive (it was negative when
    the first evaluation, outside the timed loop, was subtracted too)."""
    config = ExperimentConfig(model="lenet5", iterations=1, eval_every=1, quiet=True).resolved()
    model = build_model(config, (1, 28, 28), 10, seed=0)
    result = train(model, Mask.ones(model), fashion_splits, config, data_seed=0)
    assert result.iterations == 1 and len(result.curve) == 2 and result.train_seconds > 0
