"""Every knob of an experiment in one validated dataclass.

`ExperimentConfig` holds what a user sets; `resolved()` fills the fields left as None from
the model's defaults (Frankle & Carbin 2019). Every user mistake raises `ConfigError`, whose
one-line message names the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASETS = (
    "mnist",
    "fashionmnist",
    "digits5k",
    "cifar10",
    "cifar100",
    "svhn",
    "cifar10a",
    "cifar10b",
    "mnist_rgb32",
    "fashionmnist_rgb32",
)
CIFAR_DATASETS = ("cifar10", "cifar100", "cifar10a", "cifar10b")  # trained with crop_flip by default
AUGMENTS = ("none", "crop_flip")
MODELS = (
    "fc",
    "lenet300",
    "lenet5",
    "lenet5_tanh",
    "conv2",
    "conv4",
    "conv6",
    "cifar_resnet_<depth>[_<width>]",
    "cifar_vgg_11",
    "cifar_vgg_13",
    "cifar_vgg_16",
    "cifar_vgg_19",
    "resnet50",
    "alexnet",
)
CIFAR_RESNET = re.compile(r"cifar_resnet_([1-9][0-9]*)(?:_([1-9][0-9]*))?")  # OpenLTH's names: depth 6n+2, width
CUSTOM = re.compile(r"([A-Za-z_][\w.]*):([A-Za-z_]\w*)")  # 'module:factory' or 'module:function', importable
OPTIMIZERS = ("sgd", "adam")
RESETS = ("init", "rewind", "reinit")
LR_SCHEDULES = ("constant", "one_cycle", "step", "cosine")
BIAS_INITS = ("zeros", "normal")
LOSS_REDUCTIONS = ("mean", "sum")
INIT_PRUNING = ("magnitude_init", "snip", "grasp", "synflow")  # masks scored at the ticket's starting weights
ABLATIONS = ("shuffle", "reinit", "invert")  # of each such mask: "snip_invert", ...
MASK_ONE_ACTIONS = ("reshuffle", "signed_constant")  # the ticket's mask, its survivors set otherwise (Zhou et al.)
CONTROLS = (
    "reinit",
    "random_mask",
    "magnitude_init",
    "retrain",
    *INIT_PRUNING[1:],
    *MASK_ONE_ACTIONS,
    *(f"{method}_{ablation}" for method in INIT_PRUNING for ablation in ABLATIONS),
)
MASK_CRITERIA = ("large_final", "magnitude_increase", "movement", "large_init_large_final")
INIT_PRUNING_COUNTS = ("ticket", "global")
KINDS = ("ticket", *CONTROLS)  # the kinds of training run a results row can hold
PRUNE_SCOPES = ("layerwise", "global")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16")
TRACKERS = ("none", "tensorboard", "mlflow", "wandb")  # lthutils.tracking
MAX_YAML_BYTES = 1_000_000  # a parameter or config file is a few lines


class ConfigError(ValueError):
    """A user mistake: names the field, the value given and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        super().__init__(f"{field_name}={value!r} is not allowed: expected {allowed}")
        self.field_name = field_name

    def located(self, where: str) -> ConfigError:
        """The same error with its message prefixed by where the value came from (a file)."""
        error = type(self).__new__(type(self))
        error.__dict__.update(self.__dict__)
        error.args = (f"{where}: {self}",)
        return error

    def _render_traceback_(self) -> list[str]:
        """In a notebook (IPython asks for this): the one line that says what to change."""
        return [f"ConfigError: {self}"]


def read_yaml(path: str | Path, field_name: str) -> Any:
    """A YAML file's content (yaml.safe_load: no tags that run code), or ConfigError naming
    `field_name` when it is not a readable regular file of at most MAX_YAML_BYTES of UTF-8 YAML."""
    where = str(path)
    try:
        status = Path(path).stat()  # follows links: a broken or looping one lands in OSError
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(field_name, where, "a regular YAML file (not a folder, device or pipe)")
        if status.st_size > MAX_YAML_BYTES:
            size = f"{status.st_size / 1e6:.1f} MB"
            raise ConfigError(field_name, where, f"a YAML file of at most {MAX_YAML_BYTES // 10**6} MB (it has {size})")
        return yaml.safe_load(Path(path).read_bytes().decode("utf-8-sig"))
    except OSError as error:
        raise ConfigError(field_name, where, f"a readable YAML file ({error.strerror})") from error
    except UnicodeDecodeError as error:
        raise ConfigError(field_name, where, f"a UTF-8 text file (byte {error.start} is not UTF-8)") from error
    except yaml.YAMLError as error:
        raise ConfigError(field_name, where, f"valid YAML ({str(error).splitlines()[0]})") from error


@dataclass(frozen=True)
class ModelDefaults:
    """Hyperparameters of a model as Frankle & Carbin (2019) train and prune it."""

    optimizer: str
    lr: float
    batch_size: int
    prune_rate: float  # fully connected layers, fraction of surviving weights per round
    prune_rate_conv: float
    prune_scope: str = "layerwise"
    prune_output: bool = True
    reset: str = "init"
    rewind_iteration: int = 0


# The CIFAR models as OpenLTH trains and prunes them: global pruning of 20% per round over every
# conv (shortcuts included) and linear weight, VGG's output layer left dense. ResNets and VGGs
# rewind to step 1,000 rather than theta_0, where IMP fails for them at standard learning rates
# (Frankle et al., "Stabilizing the Lottery Ticket Hypothesis" and "Linear Mode Connectivity and
# the Lottery Ticket Hypothesis"); 1,000 steps as OpenLTH's CIFAR ResNet studies rewind.
MODEL_DEFAULTS = {
    "fc": ModelDefaults("adam", 1.2e-3, 60, 0.2, 0.1),
    "lenet300": ModelDefaults("adam", 1.2e-3, 60, 0.2, 0.1),
    "lenet5": ModelDefaults("adam", 1.2e-3, 60, 0.2, 0.1),
    "lenet5_tanh": ModelDefaults("adam", 1.2e-3, 60, 0.2, 0.1),
    "conv2": ModelDefaults("adam", 2e-4, 60, 0.2, 0.1),
    "conv4": ModelDefaults("adam", 3e-4, 60, 0.2, 0.1),
    "conv6": ModelDefaults("adam", 3e-4, 60, 0.2, 0.15),
    "cifar_resnet": ModelDefaults("sgd", 0.1, 128, 0.2, 0.2, "global", reset="rewind", rewind_iteration=1000),
    "cifar_vgg": ModelDefaults(
        "sgd", 0.1, 128, 0.2, 0.2, "global", prune_output=False, reset="rewind", rewind_iteration=1000
    ),
    "resnet50": ModelDefaults("sgd", 0.1, 128, 0.2, 0.2, "global", reset="rewind", rewind_iteration=1000),
    "alexnet": ModelDefaults("sgd", 0.01, 128, 0.2, 0.2, "global"),  # at 0.1 (no batch norm) it diverged here
    "custom": ModelDefaults("adam", 1.2e-3, 60, 0.2, 0.1),  # a user's 'module:factory': LeNet's recipe
}


def model_family(model: str) -> str:
    """The MODEL_DEFAULTS key of a model name: cifar_resnet_20_16 -> cifar_resnet, cifar_vgg_16 -> cifar_vgg."""
    if CIFAR_RESNET.fullmatch(model):
        return "cifar_resnet"
    if CUSTOM.fullmatch(model):
        return "custom"
    return "cifar_vgg" if model.startswith("cifar_vgg_") else model


def imported(field_name: str, path: str, what: str) -> Any:
    """The callable a 'module:name' path names (importing the module), or ConfigError."""
    module_name, name = path.split(":")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(field_name, path, f"an importable 'module:{what}' ({error})") from error
    if not callable(found):
        raise ConfigError(field_name, path, f"an importable 'module:{what}' (it names a {type(found).__name__})")
    return found


PRUNE_FUNCTIONS: dict[str, Callable[..., Any]] = {}  # by name: lthutils.pruning.register_prune_function


def prune_function(name: str) -> Callable[..., Any]:
    """A registered prune function, or the one a 'module:function' path names (importing it)."""
    if name in PRUNE_FUNCTIONS:
        return PRUNE_FUNCTIONS[name]
    if CUSTOM.fullmatch(name):
        return imported("prune_scope", name, "function")
    allowed = ", ".join(["layerwise", "global", *PRUNE_FUNCTIONS]) + ", or an importable 'module:function'"
    raise ConfigError("prune_scope", name, f"one of {allowed}")


def named_callable(field_name: str, value: Any, what: str) -> Any:
    """A callable given in Python as its 'module:qualname' path (a config holds names, so that
    run ids are hashes and workers can import it); other values unchanged."""
    if not callable(value):
        return value
    path = f"{value.__module__}:{value.__qualname__}"
    if not CUSTOM.fullmatch(path) or imported(field_name, path, what) is not value:
        raise ConfigError(field_name, path, f"a {what} defined at the top level of a module (importable by its name)")
    return path


# Fields that do not change any number a run produces: they are left out of the run's
# identity, so adding seeds, rounds or controls to a finished run resumes it.
NON_IDENTITY_FIELDS = (
    "name",
    "seeds",
    "rounds",
    "controls",
    "device",
    "quiet",
    "data_root",
    "exp_root",
    "model_root",
    "tracker",
)

# Options added after runs existed: left out of a run's identity at their defaults, so that the
# run ids of configs that do not use them stay what they were.
LATER_FIELD_DEFAULTS = {
    "lr_schedule": "constant",
    "warmup_iterations": 0,
    "weight_decay": 0.0,
    "bias_init": "zeros",
    "loss_reduction": "mean",
    "augment": "none",
    "prune_output": True,
    "mask_criterion": "large_final",
    "init_pruning_counts": "ticket",
}


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class ExperimentConfig:
    """One lottery-ticket experiment: data, model, training, pruning and where results go."""

    name: str = _help("results folder under exp_root", "imp")
    dataset: str = _help("one of " + ", ".join(DATASETS), "fashionmnist")
    model: str = _help(
        "one of " + ", ".join(MODELS) + ", or your own: 'module:factory' (or the factory itself, in Python), "
        "factory(input_shape, num_classes) returning an nn.Module with a Linear or Conv2d layer; its Linear, Conv2d "
        "and batch-norm layers are initialized from the seed as the built-in models' are",
        "lenet300",
    )
    n_layers: int = _help("hidden layers of the 'fc' model", 2)
    n_neurons: int = _help("units per hidden layer of the 'fc' model", 300)
    optimizer: str | None = _help("sgd or adam; None takes the model's default", None)
    lr: float | None = _help("learning rate; None takes the model's default", None)
    momentum: float = _help("SGD momentum (ignored by Adam)", 0.9)
    lr_schedule: str = _help(
        "constant; one_cycle: torch's OneCycleLR over each training run (peak lr; it also cycles SGD's momentum, or "
        "Adam's beta1, between 0.85 and 0.95); step: lr times lr_gamma at each of lr_milestones (OpenLTH's CIFAR "
        "recipe); cosine: lr * (1 + cos(pi * step / steps)) / 2 over each training run",
        "constant",
    )
    lr_milestones: tuple[float, ...] = _help(
        "lr_schedule='step': the fractions of a training run's steps from which the lr is multiplied by lr_gamma once "
        "more (OpenLTH's ResNet-20 and VGG: 80 and 120 of 160 epochs, 0.5 and 0.75)",
        (0.5, 0.75),
    )
    lr_gamma: float = _help("lr_schedule='step': the factor at each milestone", 0.1)
    warmup_iterations: int = _help(
        "steps of linear learning-rate warmup from 0, multiplying the constant, step or cosine schedule", 0
    )
    weight_decay: float = _help(
        "L2 penalty added to the gradient by SGD and Adam (OpenLTH's CIFAR recipe: 1e-4); pruned weights are zero, "
        "so it never revives them",
        0.0,
    )
    loss_reduction: str = _help(
        "mean (the batch's mean loss), or sum (its summed loss: steps batch_size times larger, as the original study)",
        "mean",
    )
    batch_size: int | None = _help("examples per step; None takes the model's default", None)
    augment: str | None = _help(
        "none, or crop_flip: each training image of a batch cropped at random from its 4-pixel zero padding (the "
        "training set's mean colour) and flipped left-right with probability 1/2, drawn from the data order's "
        "generator; None: crop_flip on " + ", ".join(CIFAR_DATASETS) + ", none otherwise",
        None,
    )
    epochs: int | None = _help("training epochs per round (unless iterations is set)", 3)
    iterations: int | None = _help("training steps per round; overrides epochs when set", None)
    rounds: int = _help("pruning rounds after the dense round 0", 10)
    prune_rate: float | None = _help("fraction of surviving fully connected weights pruned per round", None)
    prune_rate_conv: float | None = _help("the same for conv layers; None takes the model's default", None)
    prune_rate_output: float | None = _help("the same for the output layer; None is half of prune_rate", None)
    prune_scope: str | None = _help(
        "layerwise (each layer its own rate), global (one threshold), or your own prune function: a name registered "
        "with lthutils.pruning.register_prune_function, or 'module:function' (or the function itself, in Python), "
        "function(weights, mask, prune_rate) returning the next mask; None: global for the CIFAR ResNets, VGGs and "
        "resnet50 (OpenLTH), layerwise for the others (Frankle & Carbin)",
        None,
    )
    prune_output: bool | None = _help(
        "prune the output layer; None: the model's convention (OpenLTH leaves the CIFAR VGGs' dense, prunes the "
        "others'). Shortcut convolutions are pruned like any conv; batch-norm parameters never are",
        None,
    )
    prune_biases: bool = _help("prune biases with their layer's rate too", False)
    reset: str | None = _help(
        "init (back to theta_0), rewind (to the weights at rewind_iteration), or reinit (fresh random weights "
        "each round: the original study's reinit=True trajectory, whose masks come from reinitialized networks); "
        "None: rewind for the CIFAR ResNets, VGGs and resnet50 (Frankle et al.: reset to theta_0 fails for them), "
        "init for the others",
        None,
    )
    rewind_iteration: int | None = _help(
        "training step whose weights reset='rewind' goes back to; None: 1000 where the model rewinds by default "
        "(OpenLTH's CIFAR studies), else 0",
        None,
    )
    mask_criterion: str = _help(
        "which weights IMP keeps, scoring the trained weights w_f against those the round started from w_i (Zhou et "
        "al.): large_final |w_f| (Frankle & Carbin), magnitude_increase |w_f|-|w_i|, movement |w_f-w_i|, "
        "large_init_large_final (large in both: the smaller of the two ranks within its layer); needs prune_scope "
        "layerwise or global",
        "large_final",
    )
    controls: tuple[str, ...] = _help(
        "controls trained at each pruned round beside the ticket: reinit (its mask from a fresh init), random_mask "
        "(a random mask of the same per-layer counts on its weights), retrain (the ticket itself with another data "
        "order: a null control, its true difference is zero); pruning at initialization scored at the ticket's "
        "starting weights: magnitude_init (largest |w|), snip (|w * dL/dw|), grasp (w * Hg), synflow (iterative "
        "synaptic flow), each with the ablations <method>_shuffle (positions shuffled within each layer), "
        "<method>_reinit (fresh weights) and <method>_invert (the lowest scores kept); mask-1 actions on the ticket's "
        "mask (Zhou et al.): reshuffle (its survivors' starting values permuted within each layer), signed_constant "
        "(each survivor the sign of its starting value times its layer's starting standard deviation)",
        ("reinit",),
    )
    init_pruning_counts: str = _help(
        "how many weights the pruning-at-initialization controls keep per layer: ticket (the ticket's per-layer "
        "counts, like random_mask: then <method>_shuffle is a random mask at those counts), or global (the method's "
        "own scores across layers choose, at the ticket's total count, as SNIP, GraSP and SynFlow prune)",
        "ticket",
    )
    bias_init: str = _help("zeros (Frankle & Carbin), or normal: N(0, 1) biases, as the original study", "zeros")
    seeds: tuple[int, ...] = _help("one IMP run per seed", (0,))
    num_train: int | None = _help("class-stratified training subset size; None uses the whole pool", None)
    val_size: int | None = _help(
        "validation examples carved from the training pool; None: 5,000 (10% of small pools)", None
    )
    eval_every: int = _help("iterations between validation/test evaluations (0: only at the end)", 100)
    precision: str = _help(
        "fp32, or bf16: matrix products in bfloat16 (weights, optimizer state, masks and loss stay float32)", "fp32"
    )
    tracker: str = _help(
        "where each training run is also logged: none, tensorboard (event files in its run folder), mlflow "
        "($MLFLOW_TRACKING_URI, else <exp_root>/mlflow.db, artifacts in <exp_root>/mlflow-artifacts) or wandb "
        "(offline unless $WANDB_MODE; <exp_root>/wandb); each needs its library: pip install 'lthutils[trackers]'",
        "none",
    )
    device: str = _help("auto, cpu, cuda or mps", "auto")
    data_root: str | None = _help(
        "dataset folder; None: $LTH_DATA_ROOT, else data/ in the checkout (in the working directory for an "
        "installed package)",
        None,
    )
    exp_root: str = _help("where results go", "exp_result")
    model_root: str = _help("where tickets go", "model_save")
    quiet: bool = _help("hide progress bars", False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", named_callable("model", self.model, "factory"))
        object.__setattr__(self, "prune_scope", named_callable("prune_scope", self.prune_scope, "function"))
        validate(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        """Build from plain data (YAML, JSON, CLI), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(key, values[key], "a known key: " + ", ".join(sorted(known)))
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def resolved(self) -> ExperimentConfig:
        """A copy with every None hyperparameter replaced by the model's default."""
        defaults = MODEL_DEFAULTS[model_family(self.model)]
        prune_rate = self.prune_rate if self.prune_rate is not None else defaults.prune_rate
        prune_scope = self.prune_scope or defaults.prune_scope
        layerwise = prune_scope == "layerwise"  # global pruning has one rate for all layers
        reset, rewind_iteration = _reset_and_step(self)
        return dataclasses.replace(
            self,
            prune_scope=prune_scope,
            prune_output=defaults.prune_output if self.prune_output is None else self.prune_output,
            reset=reset,
            rewind_iteration=rewind_iteration,
            optimizer=self.optimizer or defaults.optimizer,
            lr=self.lr if self.lr is not None else defaults.lr,
            batch_size=self.batch_size or defaults.batch_size,
            augment=self.augment or ("crop_flip" if self.dataset in CIFAR_DATASETS else "none"),
            prune_rate=prune_rate,
            prune_rate_conv=self.prune_rate_conv
            if self.prune_rate_conv is not None or not layerwise
            else defaults.prune_rate_conv,
            prune_rate_output=self.prune_rate_output
            if self.prune_rate_output is not None or not layerwise
            else prune_rate / 2,
            epochs=None if self.iterations is not None else self.epochs,
        )

    def identity(self) -> dict[str, Any]:
        """The resolved fields that determine the numbers a run produces."""
        values = self.resolved().to_dict()
        for key in NON_IDENTITY_FIELDS:
            values.pop(key)
        if values["lr_schedule"] != "step":  # the milestones change nothing then
            values.pop("lr_milestones")
            values.pop("lr_gamma")
        for key, default in LATER_FIELD_DEFAULTS.items():
            if values[key] == default:
                values.pop(key)
        if self.model != "fc":
            values.pop("n_layers")
            values.pop("n_neurons")
        return values

    def run_id(self, source: str | None = None) -> str:
        """Readable name plus a short hash of `identity()`: the same config, the same folder.

        `source` is the run id of the tickets an evaluation trains; it joins the hash.
        """
        identity = {**self.identity(), "source": source}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        role = "" if source is None else "eval-"
        return f"{self.architecture}-{self.dataset}-{self.resolved().optimizer}-{role}{digest}"

    @property
    def architecture(self) -> str:
        """The model's name, with its shape for 'fc': fc<n_layers>x<n_neurons>."""
        if self.model == "fc":
            return f"fc{self.n_layers}x{self.n_neurons}"
        return self.model.rsplit(":", 1)[1] if CUSTOM.fullmatch(self.model) else self.model


def _check_type(name: str, value: Any, kind: type, optional: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        article = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string"}
        raise ConfigError(name, value, article[kind.__name__] + (" or null" if optional else ""))


def _check_choice(name: str, value: Any, allowed: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise ConfigError(name, value, "one of " + ", ".join(allowed))


def _check_positive(name: str, value: Any, optional: bool = False) -> None:
    _check_type(name, value, int, optional)
    if value is not None and value < 1:
        raise ConfigError(name, value, "a positive integer")


def _check_rate(name: str, value: Any, optional: bool = True) -> None:
    _check_type(name, value, float, optional)
    if value is not None and not 0 < value < 1:
        raise ConfigError(name, value, "a fraction strictly between 0 and 1")


def _check_model(model: Any) -> None:
    _check_type("model", model, str)
    resnet = CIFAR_RESNET.fullmatch(model)
    if resnet and (int(resnet[1]) - 2) % 6:
        raise ConfigError("model", model, "a CIFAR ResNet depth of 6n+2 (20, 32, 44, 56, 110, ...)")
    if CUSTOM.fullmatch(model):
        imported("model", model, "factory")
    elif not resnet and model not in MODELS:
        raise ConfigError("model", model, "one of " + ", ".join(MODELS) + ", or an importable 'module:factory'")


def check_tracker(name: Any) -> None:
    """ConfigError unless `name` is a tracker whose library is installed (found, not imported)."""
    _check_choice("tracker", name, TRACKERS)
    if name != "none" and importlib.util.find_spec(name) is None:
        raise ConfigError("tracker", name, f"{name} installed: pip install 'lthutils[trackers]'")


def _reset_and_step(config: ExperimentConfig) -> tuple[str, int]:
    """The reset and rewind step a config asks for, its model's where left None."""
    defaults = MODEL_DEFAULTS[model_family(config.model)]
    reset = config.reset or defaults.reset
    if config.rewind_iteration is not None:
        return reset, config.rewind_iteration
    return reset, defaults.rewind_iteration if reset == "rewind" else 0


def validate(config: ExperimentConfig) -> None:
    """Raise ConfigError for the first field that is out of its allowed range."""
    for name in ("name", "exp_root", "model_root"):
        value = getattr(config, name)
        _check_type(name, value, str)
        if not value:
            raise ConfigError(name, value, "a non-empty string")
        if not value.isprintable():  # any script and spaces; no newline, tab or NUL
            raise ConfigError(name, value, "printable characters (no newline, tab or control character)")
    if "/" in config.name or config.name.startswith(".") or len(config.name) > 100:
        raise ConfigError("name", config.name, "a folder name of at most 100 characters without '/' or a leading '.'")
    _check_choice("dataset", config.dataset, DATASETS)
    _check_model(config.model)
    _check_choice("optimizer", config.optimizer, OPTIMIZERS, optional=True)
    _check_choice("augment", config.augment, AUGMENTS, optional=True)
    if config.prune_scope is not None and config.prune_scope not in PRUNE_SCOPES:
        prune_function(config.prune_scope)
    _check_choice("reset", config.reset, RESETS, optional=True)
    _check_choice("mask_criterion", config.mask_criterion, MASK_CRITERIA)
    _check_choice("init_pruning_counts", config.init_pruning_counts, INIT_PRUNING_COUNTS)
    if config.mask_criterion != "large_final" and config.prune_scope not in (None, *PRUNE_SCOPES):
        raise ConfigError(
            "mask_criterion", config.mask_criterion, f"large_final with your own prune_scope {config.prune_scope!r}"
        )
    _check_choice("lr_schedule", config.lr_schedule, LR_SCHEDULES)
    _check_choice("bias_init", config.bias_init, BIAS_INITS)
    _check_choice("loss_reduction", config.loss_reduction, LOSS_REDUCTIONS)
    _check_choice("device", config.device, DEVICES)
    _check_choice("precision", config.precision, PRECISIONS)
    check_tracker(config.tracker)
    for name in ("n_layers", "n_neurons", "rounds"):
        _check_positive(name, getattr(config, name))
    for name in ("batch_size", "epochs", "iterations", "num_train", "val_size"):
        _check_positive(name, getattr(config, name), optional=True)
    if config.epochs is None and config.iterations is None:
        raise ConfigError("epochs", None, "a positive integer when iterations is not set")
    for name in ("prune_rate", "prune_rate_conv", "prune_rate_output"):
        _check_rate(name, getattr(config, name))
    _check_type("lr", config.lr, float, optional=True)
    if config.lr is not None and not config.lr > 0:
        raise ConfigError("lr", config.lr, "a positive number")
    _check_type("momentum", config.momentum, float)
    if not 0 <= config.momentum < 1:
        raise ConfigError("momentum", config.momentum, "a number in [0, 1)")
    for name in ("prune_biases", "quiet"):
        _check_type(name, getattr(config, name), bool)
    _check_type("prune_output", config.prune_output, bool, optional=True)
    for name in ("eval_every", "rewind_iteration", "warmup_iterations"):
        _check_type(name, getattr(config, name), int, optional=name == "rewind_iteration")
        if (getattr(config, name) or 0) < 0:
            raise ConfigError(name, getattr(config, name), "a non-negative integer")
    if (config.prune_scope or MODEL_DEFAULTS[model_family(config.model)].prune_scope) == "global":
        for name in ("prune_rate_conv", "prune_rate_output"):
            if getattr(config, name) is not None:
                raise ConfigError(name, getattr(config, name), "null with prune_scope='global' (one rate: prune_rate)")
    if config.warmup_iterations and config.lr_schedule == "one_cycle":
        raise ConfigError(
            "warmup_iterations", config.warmup_iterations, "0 with lr_schedule='one_cycle' (it has its own warmup)"
        )
    _check_type("weight_decay", config.weight_decay, float)
    if config.weight_decay < 0:
        raise ConfigError("weight_decay", config.weight_decay, "a non-negative number")
    _check_type("lr_gamma", config.lr_gamma, float)
    if not 0 < config.lr_gamma <= 1:
        raise ConfigError("lr_gamma", config.lr_gamma, "a factor in (0, 1]")
    milestones = config.lr_milestones
    if (
        not isinstance(milestones, tuple)
        or any(isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m < 1 for m in milestones)
        or list(milestones) != sorted(set(milestones))
    ):
        raise ConfigError("lr_milestones", milestones, "increasing fractions strictly between 0 and 1")
    reset, step = _reset_and_step(config)
    if reset == "rewind" and step < 1:
        raise ConfigError("rewind_iteration", config.rewind_iteration, "a positive step when reset='rewind'")
    if not isinstance(config.controls, tuple) or any(c not in CONTROLS for c in config.controls):
        raise ConfigError("controls", config.controls, "a list drawn from " + ", ".join(CONTROLS))
    if (
        not isinstance(config.seeds, tuple)
        or not config.seeds
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in config.seeds)
    ):
        raise ConfigError("seeds", config.seeds, "a non-empty list of non-negative integers")
    if len(set(config.seeds)) != len(config.seeds):
        raise ConfigError("seeds", config.seeds, "distinct seeds")
    _check_type("data_root", config.data_root, str, optional=True)
