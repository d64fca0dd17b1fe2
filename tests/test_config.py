import dataclasses

import pytest

from lthutils.config import ConfigError, ExperimentConfig
from lthutils.experiments import prepare


def test_resolved_takes_frankle_carbin_defaults():
    lenet = ExperimentConfig(model="lenet300").resolved()
    assert (lenet.optimizer, lenet.lr, lenet.batch_size) == ("adam", 1.2e-3, 60)
    assert (lenet.prune_rate, lenet.prune_rate_output) == (0.2, 0.1)
    conv6 = ExperimentConfig(model="conv6").resolved()
    assert (conv6.lr, conv6.prune_rate_conv, conv6.prune_rate, conv6.prune_rate_output) == (3e-4, 0.15, 0.2, 0.1)
    conv2 = ExperimentConfig(model="conv2", lr=0.01).resolved()
    assert (conv2.lr, conv2.prune_rate_conv) == (0.01, 0.1)


def test_run_id_is_stable_and_ignores_non_identity_fields():
    base = ExperimentConfig()
    assert base.run_id() == ExperimentConfig().run_id()
    assert base.run_id() == ExperimentConfig(seeds=(0, 1, 2), rounds=3, quiet=True, name="other").run_id()
    assert base.run_id() == ExperimentConfig(lr=1.2e-3, optimizer="adam").run_id()  # explicit defaults
    assert base.run_id() != ExperimentConfig(lr=1e-3).run_id()
    assert base.run_id() != base.run_id(source="x")
    assert base.run_id().startswith("lenet300-fashionmnist-adam-")
    assert ExperimentConfig(model="fc", n_layers=3, n_neurons=50).run_id().startswith("fc3x50-")
    # options added later leave the ids of runs that do not use them unchanged (this id predates them)
    assert base.run_id() == "lenet300-fashionmnist-adam-a6b947d7"
    assert base.run_id() != ExperimentConfig(lr_schedule="one_cycle").run_id()


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("dataset", "imagenet", "one of mnist, fashionmnist, digits5k, cifar10, cifar100, svhn, cifar10a"),
        ("model", "resnet", "one of fc, lenet300"),
        ("optimizer", "rmsprop", "one of sgd, adam"),
        ("reset", "late", "one of init, rewind, reinit"),
        ("lr_schedule", "linear", "one of constant, one_cycle, step, cosine"),
        ("bias_init", "uniform", "one of zeros, normal"),
        ("loss_reduction", "max", "one of mean, sum"),
        ("warmup_iterations", -5, "a non-negative integer"),
        ("prune_scope", "local", "one of layerwise, global"),
        ("device", "tpu", "one of auto, cpu, cuda, mps"),
        ("prune_rate", 1.0, "strictly between 0 and 1"),
        ("prune_rate", 0, "strictly between 0 and 1"),
        ("prune_rate_output", -0.1, "strictly between 0 and 1"),
        ("prune_rate_conv", "0.1", "a finite number or null"),
        ("epochs", 0, "a positive integer"),
        ("epochs", 2.5, "an integer or null"),
        ("iterations", -3, "a positive integer"),
        ("batch_size", 0, "a positive integer"),
        ("rounds", 0, "a positive integer"),
        ("num_train", 0, "a positive integer"),
        ("n_neurons", True, "an integer"),
        ("lr", 0.0, "a positive number"),
        ("momentum", 1.5, "a number in [0, 1)"),
        ("controls", ("reinit", "shuffle"), "a list drawn from reinit, random_mask"),
        ("controls", ("snip_bogus",), "snip, grasp, synflow"),
        ("mask_criterion", "small_final", "one of large_final, magnitude_increase, movement, large_init_large_final"),
        ("init_pruning_counts", "layerwise", "one of ticket, global"),
        ("seeds", (), "a non-empty list"),
        ("seeds", (1, 1), "distinct seeds"),
        ("eval_every", -1, "a non-negative integer"),
        ("name", "a/b", "a folder name of at most 100 characters without '/'"),
        ("name", "n" * 101, "a folder name of at most 100 characters"),
        ("name", "a\nb", "printable characters"),
        ("exp_root", "out\x00put", "printable characters"),
        ("lr", float("inf"), "a finite number or null"),
        ("momentum", float("nan"), "a finite number"),
    ],
)
def test_bad_values_name_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ConfigError) as error:
        ExperimentConfig(**{field: value})
    message = str(error.value)
    assert message.startswith(f"{field}={value!r} is not allowed")
    assert allowed in message
    assert "\n" not in message


def test_warmup_not_with_one_cycle():
    assert ExperimentConfig(warmup_iterations=50).warmup_iterations == 50
    with pytest.raises(
        ConfigError, match="warmup_iterations=50 is not allowed: expected 0 with lr_schedule='one_cycle'"
    ):
        ExperimentConfig(warmup_iterations=50, lr_schedule="one_cycle")


def test_rewind_needs_a_positive_iteration():
    with pytest.raises(ConfigError, match="rewind_iteration=None is not allowed: expected a positive step"):
        ExperimentConfig(reset="rewind")  # LeNets have no step to rewind to by default
    with pytest.raises(ConfigError, match="rewind_iteration=0"):
        ExperimentConfig(model="cifar_resnet_20", dataset="cifar10", rewind_iteration=0)


def test_resnets_and_vggs_rewind_by_default_and_the_others_reset_to_theta_0():
    """Frankle et al.: IMP with reset to theta_0 fails for ResNets and VGGs, so they rewind (to
    step 1,000 unless told); what the user sets wins, and a LeNet's run keeps its identity."""
    for model in ("cifar_resnet_20", "cifar_vgg_16", "resnet50"):
        resolved = ExperimentConfig(model=model, dataset="cifar10").resolved()
        assert (resolved.reset, resolved.rewind_iteration) == ("rewind", 1000)
        resolved = ExperimentConfig(model=model, dataset="cifar10", rewind_iteration=200).resolved()
        assert (resolved.reset, resolved.rewind_iteration) == ("rewind", 200)
        resolved = ExperimentConfig(model=model, dataset="cifar10", reset="init").resolved()
        assert (resolved.reset, resolved.rewind_iteration) == ("init", 0)
    for model in ("lenet300", "lenet5", "alexnet"):
        resolved = ExperimentConfig(model=model).resolved()
        assert (resolved.reset, resolved.rewind_iteration) == ("init", 0)
    assert ExperimentConfig().run_id() == ExperimentConfig(reset="init", rewind_iteration=0).run_id()
    with pytest.raises(ConfigError, match=r"rewind_iteration=1000 .* \(cifar_resnet_20 rewinds by default"):
        prepare(ExperimentConfig(model="cifar_resnet_20", dataset="cifar10", iterations=300), load_data=False)


def test_epochs_or_iterations_required():
    with pytest.raises(ConfigError, match="epochs=None"):
        ExperimentConfig(epochs=None)
    assert ExperimentConfig(epochs=None, iterations=10).resolved().iterations == 10


def test_from_dict_rejects_unknown_keys_and_takes_lists():
    with pytest.raises(ConfigError, match="learning_rate=0.1 is not allowed: expected a known key"):
        ExperimentConfig.from_dict({"learning_rate": 0.1})
    config = ExperimentConfig.from_dict({"seeds": [0, 1], "controls": ["random_mask"]})
    assert config.seeds == (0, 1) and config.controls == ("random_mask",)
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_every_field_has_help():
    assert all(f.metadata.get("help") for f in dataclasses.fields(ExperimentConfig))
