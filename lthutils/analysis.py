"""What the study's results say: each question's comparisons, verdicts, caveats and conclusions
(mask overlap: lthutils.overlap; Q4's pipeline cost: lthutils.pipeline_cost; figures:
lthutils.figures).

Functions take the tidy results of one plan (study.collect) and return tables or sentences. Each
question names its *settings* (a model; a source -> target; a search size and design) and its
*comparisons* (ticket vs a control, or vs another ticket); every comparison is a
family of settings judged on their primary endpoints by the decision rule (lthutils.rule and
lthutils.stats), and conclusions are counts of its verdicts, never wins of means. The plan id
is a hash of the runs in the frame and of the declared analysis: figure files are named
`<question>-<plan id>_<figure>`, so two parameter sets of one question never overwrite each other.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lthutils import rule
from lthutils.config import CONTROLS
from lthutils.overlap import overlap_sentence, overlaps
from lthutils.pipeline_cost import cost_sentences, pipeline_costs, q4_whole
from lthutils.rule import Analysis, Comparison

DEFAULT = Analysis()


def verb(axis: str) -> str:
    """'on' a dataset, 'with' an optimizer."""
    return "on" if axis == "dataset" else "with"


def plan_id(frame: pd.DataFrame, analysis: Analysis = DEFAULT) -> str:
    """A short hash of the runs behind a frame and the analysis declared for them: the same plan,
    the same id."""
    identity = " ".join(sorted(frame["run_id"].unique())) + json.dumps(analysis.to_dict(), sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


def still_improving(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting (frame's `setting` column): its seeds and how many of their dense runs (round 0
    tickets) had their least validation loss at the last evaluation."""
    dense = frame[(frame["round"] == 0) & (frame["kind"] == "ticket")]
    return dense.assign(still=~dense["converged"].eq(True)).groupby("setting")["still"].agg(["size", "sum"])


def accuracy_at_start(frame: pd.DataFrame) -> pd.DataFrame:
    """Each kind's validation accuracy (%) before any training, at the weights it starts from
    (the first point of its curve: theta_0, or the rewind state): a mask's accuracy at
    initialization, the supermask effect of Zhou et al. Per kind and round: weights remaining,
    seeds, mean and standard deviation over seeds. Rows without a curve (eval_every 0) are left out."""
    starts = frame["curve"].map(lambda curve: json.loads(curve)[0][2] * 100 if json.loads(curve) else np.nan)
    table = frame.assign(start=starts).dropna(subset=["start"])
    grouped = table.groupby(["kind", "round"], sort=False)
    return grouped.agg(
        weights_remaining=("weights_remaining", "first"),
        seeds=("seed", "nunique"),
        mean=("start", "mean"),
        sd=("start", "std"),
    ).reset_index()


def unconverged_settings(frame: pd.DataFrame) -> list[str]:
    """Settings whose dense network did not converge: for at least half of their seeds, its least
    validation loss came at the last evaluation. (Not any one seed: on a plateau the last
    evaluation is the least by chance now and then, so a rule on any seed would take the verdict
    away from more settings the more seeds they have: 2 of 10 seeds of two quick Q1 models, with
    losses at their last evaluations within 0.003 of the one before.)"""
    counts = still_improving(frame)
    return sorted(counts.index[2 * counts["sum"] >= counts["size"]])


def caveats(
    frame: pd.DataFrame, unconverged: list[str], primary: pd.DataFrame | None = None, analysis: Analysis | None = None
) -> str:
    """What limits the evidence: unconverged dense networks, pruned runs still improving at
    their end, diverged runs, the rule's power, stopping early, and the seeds."""
    lines = []
    if unconverged:
        lines.append(
            "Dense network did not converge (least validation loss at the last evaluation for at least half of the "
            f"seeds) for: {', '.join(unconverged)}. These margins describe early training; no verdict is drawn "
            "from them."
        )
    counts = still_improving(frame)
    some = counts[(counts["sum"] > 0) & ~counts.index.isin(unconverged)]
    if len(some):
        parts = ", ".join(f"{setting} {row['sum']} of {row['size']}" for setting, row in some.iterrows())
        lines.append(f"Dense networks with their least validation loss at the last evaluation, by seeds: {parts}.")
    pruned = frame[frame["round"] > 0]
    still = pruned[~pruned["converged"].eq(True) & ~pruned["diverged"].eq(True)]
    if len(still):
        by_kind = ", ".join(f"{kind} {count}" for kind, count in still["kind"].value_counts().items())
        lines.append(
            f"{len(still)} of {len(pruned)} pruned training runs had their least validation loss at their last "
            f"evaluation (still improving when stopped: {by_kind}); their accuracies are at the end of their budget."
        )
    diverged = frame[frame["diverged"].eq(True)]
    if len(diverged):
        lines.append(f"{len(diverged)} training runs diverged; their pairs are dropped, both sides.")
    power = "" if primary is None or analysis is None else rule.power_note(primary, analysis)
    if power:
        lines.append(power)
    if analysis is not None and analysis.design.sequential:
        lines.append(
            "A setting decided at an early look is reported with the seeds it had there; its mean and interval are "
            "not adjusted for stopping early and lean away from zero (a decided effect is real by the rule, its size "
            "may be smaller)."
        )
    lines.append(f"Seeds: {', '.join(map(str, sorted(frame['seed'].unique())))}.")
    return "\n".join(f"- {line}" for line in lines)


# --- the questions ----------------------------------------------------------------------------


@dataclass
class Evidence:
    """A question's evidence: the primary verdict per (comparison, setting), the per-level
    estimates, the overlap, and the sentences drawn from them."""

    primary: pd.DataFrame
    levels: pd.DataFrame
    overlap: pd.DataFrame
    conclusion: str
    caveats: str
    rule: str
    analysis: Analysis
    runs: dict[tuple[str, str], set[str]]  # (comparison, setting): the runs behind it, with their ticket searches

    def markdown(self) -> str:
        return f"{self.rule}\n\n{self.conclusion}\n\n**Caveats**\n\n{self.caveats}"


def _evidence(
    frame: pd.DataFrame,
    comparisons: list[Comparison],
    analysis: Analysis,
    overlap: pd.DataFrame | None,
    extra: list[str],
    extra_caveats: list[str] = (),
) -> Evidence:
    """Judge the comparisons of the frame's rows (whose dense runs say which settings converged);
    `overlap` None: not a question of this kind (Q1)."""
    unconverged = unconverged_settings(frame)
    primary, levels = rule.judge(rule.pair_up(comparisons), unconverged, analysis)
    sentences = rule.sentences(primary, levels, analysis) + extra
    if overlap is not None:
        sentences.append(overlap_sentence(overlap))
    overlap = pd.DataFrame() if overlap is None else overlap
    notes = caveats(frame, unconverged, primary, analysis) + "".join(f"\n- {line}" for line in extra_caveats)
    runs = {}
    for c in comparisons:
        sides = pd.concat([c.first, c.second])
        sources = sides["source_run_id"].dropna() if "source_run_id" in sides else []
        runs.setdefault((c.name, c.setting), set()).update(sides["run_id"].dropna(), sources)
    return Evidence(primary, levels, overlap, "\n".join(sentences), notes, rule.text(analysis), analysis, runs)


def with_settings_q1(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(setting=frame["model"])


def evidence_q1(frame: pd.DataFrame, analysis: Analysis = DEFAULT) -> Evidence:
    frame = with_settings_q1(frame)
    controls = [kind for kind in CONTROLS if kind in set(frame["kind"])]
    comparisons = [  # settings in the rows' order: the declared models', or the runs' natural order (report)
        Comparison(f"ticket vs {control}", model, rows[rows["kind"] == "ticket"], rows[rows["kind"] == control])
        for control in controls
        for model, rows in frame.groupby("setting", sort=False)
    ]
    return _evidence(frame, comparisons, analysis, None, [])


def with_settings_transfer(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    own = frame[f"source_{axis}"] == frame[axis]
    transferred = frame[f"source_{axis}"].astype(str) + " -> " + frame[axis].astype(str)
    return frame.assign(setting=transferred.where(~own, frame[axis].astype(str) + " (own)"))


def evidence_transfer(frame: pd.DataFrame, analysis: Analysis = DEFAULT, *, axis: str) -> Evidence:
    frame = with_settings_transfer(frame, axis)
    tickets = frame[frame["kind"] == "ticket"]
    comparisons = [
        Comparison("ticket vs reinit", setting, rows[rows["kind"] == "ticket"], rows[rows["kind"] == "reinit"])
        for setting, rows in frame.groupby("setting")
    ]
    for setting, rows in tickets[tickets["transfer"]].groupby("setting"):
        target = rows[axis].iloc[0]
        own = tickets[~tickets["transfer"] & (tickets[axis] == target)]
        comparisons.append(Comparison("transferred ticket vs the target's own ticket", setting, rows, own))

    def cross(searches: pd.DataFrame) -> Iterator[tuple[str, str, str, str]]:
        runs = searches.drop_duplicates("run_id").sort_values("setting")
        for a, b in itertools.combinations(runs.itertuples(), 2):
            first, second = (setting.removesuffix(" (own)") for setting in (a.setting, b.setting))
            pair = f"found {verb(axis)} {first} vs {verb(axis)} {second} (same theta_0)"
            yield pair, f"{first} vs {second}", a.run_id, b.run_id

    return _evidence(frame, comparisons, analysis, overlaps(frame, cross), [])


def with_settings_q4(frame: pd.DataFrame) -> pd.DataFrame:
    """Settings: 'all N' for the whole-set search, '<n>, equal steps' / '<n>, equal epochs' for a
    search on n examples with the whole-set search's steps or epochs per round."""
    whole = q4_whole(frame)
    design = np.where(frame["source_steps_per_round"] == frame["steps_per_round"].max(), "equal steps", "equal epochs")
    few = frame["source_num_train"].map("{:,}".format) + ", " + design
    return frame.assign(setting=few.where(frame["source_num_train"] < whole, f"all {whole:,}"))


def evidence_q4(frame: pd.DataFrame, analysis: Analysis = DEFAULT) -> Evidence:
    frame = with_settings_q4(frame)
    whole = q4_whole(frame)
    trained = frame[frame["num_train"] == whole]  # every run trained on the whole set
    full = trained[~trained["transfer"]]
    all_tickets = full[full["kind"] == "ticket"]
    comparisons = []
    trained = trained.sort_values(["source_num_train", "source_steps_per_round"], ascending=[True, False])
    for setting, rows in trained.groupby("setting", sort=False):
        ticket = rows[rows["kind"] == "ticket"]
        comparisons.append(Comparison("ticket vs reinit of its mask", setting, ticket, rows[rows["kind"] == "reinit"]))
        for baseline in ("magnitude_init", "random_mask"):
            comparisons.append(Comparison(f"ticket vs {baseline}", setting, ticket, full[full["kind"] == baseline]))
        if rows["transfer"].any():
            comparisons.append(Comparison("few-sample ticket vs all-sample ticket", setting, ticket, all_tickets))

    def cross(searches: pd.DataFrame) -> Iterator[tuple[str, str, str, str]]:
        full_run = searches.loc[searches["setting"].str.startswith("all"), "run_id"]
        for run in searches.drop_duplicates("run_id").itertuples():
            if not full_run.empty and run.run_id != full_run.iloc[0]:
                yield "few-sample vs all-sample ticket (same seed)", run.setting, run.run_id, full_run.iloc[0]

    searches = frame[~frame["transfer"] & (frame["num_train"] < whole)]
    still = searches[~searches["converged"].eq(True)]
    notes = [
        f"The searches on subsets stop at their last evaluation in {len(still)} of {len(searches)} training runs "
        f"(equal epochs: {int(still['setting'].str.endswith('epochs').sum())}): their tickets come from early "
        "training, by design for equal epochs. Verdicts rest on the whole-set trainings, whose convergence "
        "the rule checks.",
        "Seconds are wall time shared equally among the models trained together in one stack (the whole-set search "
        "trains a ticket and three baselines together, a subset search one ticket alone): compare pipelines by "
        "sample-epochs and FLOPs.",
    ]
    costs = pipeline_costs(frame)
    overlap = overlaps(frame[frame["kind"] == "ticket"], cross)
    return _evidence(trained, comparisons, analysis, overlap, cost_sentences(costs), notes)
