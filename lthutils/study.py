"""The four research questions as plans of units, and their results as one tidy table.

A question's plan turns its notebook's parameters into `Unit`s: find tickets for a config, or
train the tickets another config found, and the `Analysis` its verdicts are drawn with (the
primary endpoint, the margin and the seed design). `run` does each unit (resuming whatever
exists; with seeds until decided, in batches), records the plan and its analysis in
`<exp_root>/<question>/plans/<plan id>.json` and `collect`s the rows back. The report reads those
plan files, so a notebook and the report show the same rows, figures and sentences.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lthutils import analysis, figures
from lthutils.config import ConfigError, ExperimentConfig
from lthutils.data import REPO_ROOT, training_examples
from lthutils.experiments import adopt_finished, prepare
from lthutils.jobs import Unit
from lthutils.lottery import projected_remaining
from lthutils.results import divergence_note, read_results, write_json
from lthutils.rule import Analysis
from lthutils.sequential import SeedDesign

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def notebook_folder(name: str, path: str) -> str:
    """A notebook's exp_root or model_root (`name`): a relative path starts at the project's
    notebooks/ folder, wherever the notebook runs (its executed copy under exp_result/notebooks/,
    papermill's working directory)."""
    if not isinstance(path, str) or not path:
        raise ConfigError(name, path, "a folder path, relative to the project's notebooks/ folder or absolute")
    return path if os.path.isabs(path) else os.path.normpath(NOTEBOOKS_DIR / path)


def check(units: list[Unit], declared: Analysis | None = None, load_data: bool = True) -> None:
    """Every check of every unit that needs the machine (folders, dataset available, sizes) and,
    with `declared`, that its primary endpoint takes a pruned level of every setting, before any
    work. load_data=False checks sizes against data.DATASET_FACTS, the data need not be here."""
    for config in {unit.config for unit in units}:
        for name in ("exp_root", "model_root"):
            folder = Path(getattr(config, name))
            if not folder.is_dir() and (folder.exists() or not folder.parent.is_dir()):
                allowed = "a folder, or a new one inside an existing folder (an executed notebook keeps the "
                raise ConfigError(name, str(folder), allowed + "absolute folders it ran with: set them to yours)")
        setting = prepare(config, load_data=load_data)
        if declared is not None:
            levels = 100 * pd.Series(
                projected_remaining(setting.template, setting.config)[1:], index=range(1, config.rounds + 1)
            )
            if not declared.rounds(levels):
                reached = ", ".join(f"{v:.3g}%" for v in levels)
                raise ConfigError(
                    "primary",
                    declared.primary,
                    f"a band holding a pruned level ({config.architecture} reaches {reached} of weights remaining)",
                )


def run(
    units: list[Unit],
    scheduler: str | None = None,
    declared: Analysis | None = None,
    question: Question | None = None,
) -> pd.DataFrame:
    """Check, then run the units (finders first), record the plan with its analysis (None: the
    default one, unchecked against the units' pruning levels), and return its rows (of the
    design's seeds).

    `scheduler`: None runs them here, one after another; a Dask scheduler's address (such as
    `run-all --scheduler local` passes to the notebooks) runs each unit's seeds in groups, a
    task each, there (lthutils.cluster; the groups: lthutils.cost.seed_groups). With a sequential
    seed design (`declared.design`) the units run with the first look's seeds; then, look by
    look, `question`'s verdicts say which settings are still inconclusive, and the units behind
    them (and the searches their transfers need) get the next look's seeds. The verdicts are a
    function of the rows alone, so a rerun resumes.
    """
    check(units, declared)
    declared = declared or analysis.DEFAULT
    design = declared.design
    if design.sequential and question is None:
        raise ValueError("seeds until decided need the question whose verdicts say which settings are decided")
    _execute(units, scheduler)
    for look in range(1, len(design.looks)):
        evidence = question.evidence(collect([u.results_path for u in units], seeds=design.seeds), declared)
        wanted = needing_seeds(units, evidence)
        if not wanted:
            break
        seeds = design.seeds_at(look)
        _execute([Unit(dataclasses.replace(u.config, seeds=seeds), u.source) for u in wanted], scheduler)
    tickets = {unit.tickets().name: unit.tickets().absolute() for unit in units}
    results = collect([unit.results_path for unit in units], tickets, design.seeds)
    exp_root = Path(units[0].config.exp_root).absolute()
    plan = {
        "results": sorted(str(unit.results_path.absolute().relative_to(exp_root)) for unit in units),
        "tickets": {run_id: os.path.relpath(path, exp_root) for run_id, path in sorted(tickets.items())},
        "analysis": declared.to_dict(),
    }
    write_json(exp_root / units[0].config.name / "plans" / f"{analysis.plan_id(results, declared)}.json", plan)
    return results


def needing_seeds(units: list[Unit], evidence: analysis.Evidence) -> list[Unit]:
    """The units behind the settings `evidence` leaves inconclusive, and the searches whose
    tickets those units train: what the next look's seeds are trained for."""
    open_settings = evidence.primary[evidence.primary["verdict"] == "inconclusive"]
    runs = set().union(*(evidence.runs[key] for key in zip(open_settings["comparison"], open_settings["setting"])))
    wanted = [u for u in units if u.results_path.parent.name in runs]
    sources = {u.source.run_id() for u in wanted if u.source is not None}
    return wanted + [u for u in units if u.source is None and u.config.run_id() in sources and u not in wanted]


def _execute(units: list[Unit], scheduler: str | None) -> None:
    """Run the units here or on `scheduler`, after copying in the rows of searches another
    question's folder finished (experiments.adopt_finished)."""
    for unit in units:
        if unit.source is None:
            adopt_finished(unit.config)
    if scheduler is None:
        for unit in sorted(units, key=lambda u: u.source is not None):
            unit.run()
    else:
        from lthutils import cluster  # dask: only when a scheduler is used

        cluster.run_units(units, scheduler)


def plans(exp_root: str | Path) -> dict[str, list[tuple[pd.DataFrame, Analysis]]]:
    """Each question's recorded plans under exp_root, as tidy frames with their declared analysis
    (plans recorded before analyses were: the default), by question key."""
    found: dict[str, list[tuple[pd.DataFrame, Analysis]]] = {}
    for key in QUESTIONS:
        for path in sorted(Path(exp_root).glob(f"{key}/plans/*.json")):
            plan = json.loads(path.read_text())
            if isinstance(plan, list):  # written before plans named their ticket folders
                plan = {"results": plan, "tickets": {}}
            declared = Analysis.from_dict(plan.get("analysis", {}))
            paths = sorted((Path(exp_root) / relative for relative in plan["results"]), key=natural_key)
            tickets = {run_id: Path(exp_root) / relative for run_id, relative in plan["tickets"].items()}
            if all(path.exists() for path in paths):
                found.setdefault(key, []).append((collect(paths, tickets, declared.design.seeds), declared))
    return found


def natural_key(path: Path) -> list:
    """`path` as text, its runs of digits compared as numbers: runs in the order fc1x10, fc1x50,
    fc1x100 (figures and tables list settings in their rows' order)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def collect(
    results_paths: list[Path], tickets: dict[str, Path] | None = None, seeds: tuple[int, ...] | None = None
) -> pd.DataFrame:
    """The rows of these results.csv files (those of `seeds`, if given), tidy; with `tickets`
    (ticket folder by the run id that found them), each row's `tickets` column names the folder
    of the tickets it trained."""
    frame = tidy(pd.concat([read_results(path) for path in results_paths], ignore_index=True))
    if seeds is not None:
        frame = frame[frame["seed"].isin(seeds)].reset_index(drop=True)
    if tickets:
        finder = frame["source_run_id"] if "source_run_id" in frame else frame["run_id"]
        frame["tickets"] = finder.fillna(frame["run_id"]).map({k: str(v) for k, v in tickets.items()})
    return frame


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Mark transfer rows; fill source_* columns of search rows with their own setting; add
    weights_remaining_pct; blank the accuracies of diverged runs, so no mean, figure or
    conclusion counts them."""
    frame = frame.copy()
    frame["transfer"] = frame["source_run_id"].notna() if "source_run_id" in frame else False
    for column in ("dataset", "optimizer", "num_train", "steps_per_round"):
        if column not in frame:  # results written before lthutils recorded it
            continue
        source = f"source_{column}"
        frame[source] = frame[source].fillna(frame[column]) if source in frame else frame[column]
    frame["source_num_train"] = frame["source_num_train"].astype(int)
    frame["weights_remaining_pct"] = 100 * frame["weights_remaining"]
    if "converged" not in frame:  # results written before lthutils recorded it: not known to have converged
        frame["converged"] = False
    if "diverged" in frame:  # measured before the loss blew up, or after: neither says how the ticket does
        blank = ["test_acc", "test_acc_at_early_stop", "early_stop_iter"]
        frame[blank] = frame[blank].astype(float).mask(frame["diverged"].eq(True), axis=0)
    return frame


RECIPE_FIELDS = (  # config fields a notebook's `recipe` may set for every run of its question
    "batch_size",
    "momentum",
    "lr_schedule",
    "lr_milestones",
    "lr_gamma",
    "warmup_iterations",
    "weight_decay",
    "loss_reduction",
    "augment",
    "bias_init",
    "reset",
    "rewind_iteration",
    "prune_scope",
    "prune_output",
    "prune_rate_conv",
    "prune_rate_output",
    "prune_biases",
    "mask_criterion",
    "init_pruning_counts",
)


def _base(
    name: str,
    rounds: int,
    rate: float | None,
    iterations: int,
    seeds: list[int] | dict,
    eval_every: int,
    val_size: int | None,
    exp_root: str,
    model_root: str,
    quiet: bool,
    recipe: dict | None = None,
    **fields,
) -> ExperimentConfig:
    recipe = {} if recipe is None else recipe
    if not isinstance(recipe, dict):
        raise ConfigError("recipe", recipe, "a mapping of config fields: " + ", ".join(RECIPE_FIELDS))
    for key in recipe:
        if key not in RECIPE_FIELDS or key in fields:
            allowed = ", ".join(field for field in RECIPE_FIELDS if field not in fields)
            raise ConfigError("recipe", {key: recipe[key]}, f"fields this question does not set itself: {allowed}")
    fields.update({key: tuple(value) if isinstance(value, list) else value for key, value in recipe.items()})
    return ExperimentConfig(
        name=name,
        rounds=rounds,
        prune_rate=rate,
        epochs=None,
        iterations=iterations,
        seeds=SeedDesign.parse(seeds).seeds_at(0),  # a sequential design's first look; study.run adds the rest
        eval_every=eval_every,
        val_size=val_size,
        exp_root=exp_root,
        model_root=model_root,
        quiet=quiet,
        **fields,
    )


def parse_model(spec: str) -> dict:
    """'lenet300', 'lenet5', 'conv2' ... or 'fc:<layers>x<neurons>' (e.g. 'fc:2x100') as config fields."""
    if not isinstance(spec, str):
        raise ConfigError("models", spec, "model names such as 'lenet5' or 'fc:2x100'")
    if spec.startswith("fc:"):
        try:
            n_layers, n_neurons = (int(part) for part in spec[3:].split("x"))
        except ValueError as error:
            raise ConfigError("models", spec, "'fc:<layers>x<neurons>', e.g. 'fc:2x100'") from error
        return {"model": "fc", "n_layers": n_layers, "n_neurons": n_neurons}
    return {"model": spec}


def plan_q1(
    dataset: str,
    models: list[str],
    num_train: int | None,
    optimizer: str | None,
    lr: float | None,
    controls: list[str],
    **common,
) -> list[Unit]:
    """Q1: one ticket search per model, each with its controls (reinit among them)."""
    if not models or len(set(models)) != len(models):
        raise ConfigError("models", models, "a non-empty list of distinct models")
    if "reinit" not in controls:
        raise ConfigError("controls", controls, "a list with 'reinit', the control Q1 compares tickets with")
    return [
        Unit(
            _base(
                "q1",
                dataset=dataset,
                num_train=num_train,
                optimizer=optimizer,
                lr=lr,
                controls=tuple(controls),
                **parse_model(spec),
                **common,
            )
        )
        for spec in models
    ]


def _transfer_plan(name: str, axis: str, values: list, fixed: dict, **common) -> list[Unit]:
    """Search on every value of `axis`, then train each value's tickets on every other value."""
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(axis + "s", values, "at least two distinct values")
    finders = {value: _base(name, controls=("reinit",), **{axis: value}, **fixed, **common) for value in values}
    units = [Unit(config) for config in finders.values()]
    units += [
        Unit(finders[target], source=finders[source]) for source in values for target in values if source != target
    ]
    return units


def check_heatmap_rounds(heatmap_rounds: list[int], rounds: int) -> None:
    if not heatmap_rounds or any(
        isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= rounds for r in heatmap_rounds
    ):
        raise ConfigError("heatmap_rounds", heatmap_rounds, f"a non-empty list of pruned rounds, 1 to {rounds}")


def plan_q2(
    datasets: list[str],
    model: str,
    num_train: int | None,
    optimizer: str | None,
    lr: float | None,
    heatmap_rounds: list[int],
    **common,
) -> list[Unit]:
    """Q2: tickets found on each dataset, trained on every other one, beside reinit there.
    (heatmap_rounds is checked here and used by the figures.)"""
    check_heatmap_rounds(heatmap_rounds, common["rounds"])
    fixed = {**parse_model(model), "num_train": num_train, "optimizer": optimizer, "lr": lr}
    return _transfer_plan("q2", "dataset", datasets, fixed, **common)


def plan_q3(
    optimizers: list[str],
    lrs: dict[str, float],
    momentum: float,
    dataset: str,
    model: str,
    num_train: int | None,
    heatmap_rounds: list[int],
    **common,
) -> list[Unit]:
    """Q3: tickets found with each optimizer (at its own learning rate, `lrs`), trained with every
    other one, beside reinit there. (heatmap_rounds is checked here and used by the figures.)"""
    check_heatmap_rounds(heatmap_rounds, common["rounds"])
    fixed = {**parse_model(model), "dataset": dataset, "num_train": num_train, "momentum": momentum}
    units = _transfer_plan("q3", "optimizer", optimizers, fixed, **common)  # checks the optimizers
    if not isinstance(lrs, dict) or set(lrs) != set(optimizers):
        raise ConfigError("lrs", lrs, "a learning rate for each optimizer: " + ", ".join(map(str, optimizers)))

    def at_its_rate(config: ExperimentConfig | None) -> ExperimentConfig | None:
        return None if config is None else dataclasses.replace(config, lr=lrs[config.optimizer])

    # each optimizer trains at its own rate, wherever its tickets came from
    return [Unit(at_its_rate(unit.config), at_its_rate(unit.source)) for unit in units]


Q4_CONTROLS = ("reinit", "random_mask", "magnitude_init")


def plan_q4(
    search_sizes: list[int],
    num_train: int | None,
    dataset: str,
    model: str,
    optimizer: str | None,
    lr: float | None,
    **common,
) -> list[Unit]:
    """Q4: tickets found on subsets of `search_sizes` examples, each trained on the whole set
    (`num_train` examples; None: all of them) beside the reinit of its mask. Each size searches
    twice: with the whole-set search's steps per round (equal steps: the data effect) and with its
    epochs (equal epochs, the original design: fewer examples, fewer steps). The whole-set search
    trains its tickets beside the zero-cost baselines of the same per-layer sparsities: reinit,
    random mask and the magnitude-at-init mask (Q4_CONTROLS)."""
    if (
        not isinstance(search_sizes, list)
        or not search_sizes
        or len(set(search_sizes)) != len(search_sizes)
        or any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in search_sizes)
    ):
        raise ConfigError("search_sizes", search_sizes, "a non-empty list of distinct sizes (the whole set is added)")
    fixed = {**parse_model(model), "dataset": dataset, "optimizer": optimizer, "lr": lr}
    full = _base("q4", controls=Q4_CONTROLS, num_train=num_train, **fixed, **common)
    whole = training_examples(dataset, num_train, full.val_size)
    if max(search_sizes) >= whole:
        raise ConfigError("search_sizes", search_sizes, f"sizes below the whole set's {whole:,} training examples")
    steps = full.iterations
    evaluation = dataclasses.replace(full, controls=("reinit",))
    units = [Unit(full)]
    for size in search_sizes:
        for size_steps in sorted({steps, math.ceil(steps * size / whole)}, reverse=True):
            search = dataclasses.replace(full, controls=(), num_train=size, iterations=size_steps)
            units += [Unit(search), Unit(evaluation, source=search)]
    return units


@dataclass(frozen=True)
class Question:
    """A research question: its notebook, its plan, its evidence (verdicts, overlap, sentences)
    and its figures."""

    key: str
    notebook: str
    title: str
    plan: Callable[..., list[Unit]]
    evidence: Callable[[pd.DataFrame, Analysis], analysis.Evidence]
    draw: Callable[..., dict[str, Figure]]  # (frame, evidence, **display parameters) -> figures by name

    def units(
        self, primary: dict | None = None, delta: float = analysis.DEFAULT.delta, **parameters
    ) -> tuple[list[Unit], Analysis]:
        """A notebook's parameters (but its scheduler) as the units of work and the analysis
        declared for their verdicts; ConfigError for a bad value, before any work."""
        return self.plan(**parameters), Analysis.declare(primary, delta, parameters.get("seeds"))

    def conclude(self, frame: pd.DataFrame, declared: Analysis = analysis.DEFAULT) -> str:
        """The rule, the conclusion and its caveats as markdown, naming any runs that diverged."""
        return self.evidence(frame, declared).markdown() + divergence_note(frame)

    def figures(self, frame: pd.DataFrame, evidence: analysis.Evidence, figures_dir: str | Path, **display) -> list:
        """Draw the question's figures and save each as `<key>-<plan>_<name>`.png and .pdf; the PNGs' paths."""
        stem = f"{self.key}-{analysis.plan_id(frame, evidence.analysis)}"
        return figures.save_figures(self.draw(frame, evidence, **display), figures_dir, stem)


QUESTIONS = {
    q.key: q
    for q in (
        Question(
            "q1",
            "q1_model_scale.ipynb",
            "Q1: do winning tickets beat reinit at every model scale?",
            plan_q1,
            analysis.evidence_q1,
            figures.draw_q1,
        ),
        Question(
            "q2",
            "q2_dataset_transfer.ipynb",
            "Q2: do tickets found on one dataset work on another?",
            plan_q2,
            functools.partial(analysis.evidence_transfer, axis="dataset"),
            functools.partial(figures.draw_transfer, axis="dataset"),
        ),
        Question(
            "q3",
            "q3_optimizer_transfer.ipynb",
            "Q3: do tickets found with one optimizer work with another?",
            plan_q3,
            functools.partial(analysis.evidence_transfer, axis="optimizer"),
            functools.partial(figures.draw_transfer, axis="optimizer"),
        ),
        Question(
            "q4",
            "q4_few_sample.ipynb",
            "Q4: do tickets found with few samples work on the whole training set?",
            plan_q4,
            analysis.evidence_q4,
            figures.draw_q4,
        ),
    )
}
