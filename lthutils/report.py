"""The HTML report: every results.csv under exp_result/, one section per question.

`build_report(exp_root)` writes `<exp_root>/report/all_results.csv` (every row, tidy, with a
`study` column naming the folder it came from), `<exp_root>/report/conclusions.md` (each plan's
computed conclusion), `<exp_root>/report/verdicts.csv` (every setting's primary verdict),
`<exp_root>/report/levels.csv` (the per-level secondary estimates) and
`<exp_root>/report/index.html`, whose figures (made by the same functions as the notebooks) land
in `<exp_root>/figures/`.
"""

from __future__ import annotations

import html
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lthutils import analysis, plots, rule, stats, study
from lthutils.config import CONTROLS, KINDS, ConfigError
from lthutils.results import divergence_note, read_results, write_atomic

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}table{border-collapse:collapse;font-size:.85em}
.wide{overflow-x:auto}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}h2{border-bottom:2px solid #0173b2}"""


def collect(exp_root: str | Path) -> pd.DataFrame:
    """Every results.csv under exp_root (exp_root/<study>/<run_id>/results.csv), tidy, in the
    runs' natural order (fc1x10, fc1x50, fc1x100: numbers in names compare as numbers)."""
    paths = sorted(Path(exp_root).glob("*/*/results.csv"), key=study.natural_key)
    if not paths:
        raise ConfigError("exp_root", str(exp_root), "a folder with results (exp_result/<study>/<run>/results.csv)")
    frames = [read_results(path).assign(study=path.parent.parent.name) for path in paths]
    return study.tidy(pd.concat(frames, ignore_index=True))


def _markdown_to_html(text: str) -> str:
    """The conclusions' small markdown: paragraphs, '- ' bullet lists, **bold** and *italics*."""

    def inline(line: str) -> str:
        line = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(line))
        return re.sub(r"\*(\S.*?)\*", r"<em>\1</em>", line)

    parts, items = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("- "):
            items.append(f"<li>{inline(line[2:])}</li>")
            continue
        if items:
            parts.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.strip():
            parts.append(f"<p>{inline(line)}</p>")
    return "\n".join(parts)


def _figures(figures: list[Path], page_dir: Path) -> str:
    return "\n".join(
        f'<a href="{os.path.relpath(f.with_suffix(".pdf"), page_dir)}">'
        f'<img src="{os.path.relpath(f, page_dir)}" alt="{html.escape(f.stem)}"></a>'
        for f in figures
    )


def _section(title: str, figures: list[Path], conclusion: str, page_dir: Path) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{_markdown_to_html(conclusion)}\n{_figures(figures, page_dir)}"


def _question_section(title: str, evidence: analysis.Evidence, figures: list[Path], note: str, page_dir: Path) -> str:
    """A results section: the decision rule, the conclusion, the verdict tables (primary, then
    per level), the figures, the caveats."""
    table = rule.verdict_table(evidence.primary, evidence.analysis.delta).to_html(index=False, border=0, na_rep="")
    levels = rule.level_table(evidence.levels).to_html(index=False, border=0, na_rep="")
    return "\n".join(
        [
            f"<h2>{html.escape(title)}</h2>",
            _markdown_to_html(evidence.rule),
            "<h3>Conclusion</h3>",
            _markdown_to_html(evidence.conclusion),
            "<h3>Verdicts</h3>",
            f"<details><summary>{len(evidence.primary)} settings (primary endpoints)</summary>"
            f"<div class='wide'>{table}</div></details>",
            f"<details><summary>{len(evidence.levels)} pruning levels (secondary estimates)</summary>"
            f"<div class='wide'>{levels}</div></details>",
            "<h3>Figures</h3>",
            _figures(figures, page_dir),
            "<h3>Caveats</h3>",
            _markdown_to_html(evidence.caveats + note),
        ]
    )


def build_report(exp_root: str | Path = "exp_result") -> Path:
    """Write the report and the tidy all_results.csv; return index.html's path.

    A question gets one section per recorded plan (one notebook run's parameters), with the
    figures and conclusion that notebook showed; other folders (runs of `python -m lthutils imp`)
    get their accuracy curves and summary tables.
    """
    exp_root = Path(exp_root)
    frame = collect(exp_root)
    page_dir, figures_dir = exp_root / "report", exp_root / "figures"
    sections, conclusions, verdicts, levels = [], [], [], []
    for key, frames in study.plans(exp_root).items():
        question = study.QUESTIONS[key]
        for rows, declared in frames:
            plan = analysis.plan_id(rows, declared)
            title = f"{question.title} (plan {plan}, {rows['run_id'].nunique()} runs)"
            evidence, note = question.evidence(rows, declared), divergence_note(rows)
            figures = question.figures(rows, evidence, figures_dir)
            sections.append(_question_section(title, evidence, figures, note, page_dir))
            conclusions.append(f"### {title}\n\n{evidence.markdown()}{note}\n")
            for tables, table in (
                (verdicts, rule.verdict_table(evidence.primary, declared.delta)),
                (levels, rule.level_table(evidence.levels)),
            ):
                tables.append(table.assign(question=key, plan=plan)[["question", "plan", *table]])
    for name, rows in frame[~frame["study"].isin(list(study.QUESTIONS))].groupby("study"):
        png = plots.save(plots.accuracy_vs_sparsity(rows, panel="model"), figures_dir, f"{name}_accuracy")
        summaries = {run: summarize(exp_root / name / run / "results.csv") for run in sorted(rows["run_id"].unique())}
        tables = [
            f"<h3>{html.escape(run)}</h3>\n<pre class='wide'>{html.escape(text)}</pre>"
            for run, text in summaries.items()
        ]
        sections.append(_section(f"IMP runs: {name}", [png], "", page_dir) + "\n".join(tables))
    write_atomic(page_dir / "all_results.csv", frame.to_csv(index=False).encode())
    write_atomic(page_dir / "conclusions.md", "\n".join(conclusions).encode())
    for name, tables in (("verdicts.csv", verdicts), ("levels.csv", levels)):
        if tables:
            write_atomic(page_dir / name, pd.concat(tables).to_csv(index=False).encode())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Lottery-ticket study</title>"
        f"<style>{STYLE}</style></head><body><h1>Lottery-ticket study</h1>"
        f"<p>{len(frame)} training runs from {frame['run_id'].nunique()} runs under {html.escape(str(exp_root))}, "
        f"collected {stamp}. Every row: <a href='all_results.csv'>all_results.csv</a>. "
        f"Figures link to their PDF.</p>\n" + "\n".join(sections) + "</body></html>\n"
    )
    write_atomic(page_dir / "index.html", page.encode())
    return page_dir / "index.html"


def summarize(path: Path) -> str:
    """A markdown table of a results.csv: per round, mean ± std over seeds of each kind's
    test accuracy (percent) at the early-stopping iteration and at the end of training; then the
    runs that diverged and the sparsest round's paired differences (_margins)."""
    if not Path(path).is_file():
        raise ConfigError("results", str(path), "an existing results.csv")
    frame = read_results(path)
    if frame.empty:
        raise ConfigError("results", str(path), "a results.csv with rows that pass their checksums (see the warnings)")
    kinds = [k for k in KINDS if k in set(frame["kind"])]
    table = frame.groupby("round").agg(weights_remaining=("weights_remaining", "first"))
    table["weights remaining (%)"] = (100 * table.pop("weights_remaining")).map("{:.1f}".format)
    for metric, label in (("test_acc_at_early_stop", "acc at early stop (%)"), ("test_acc", "final acc (%)")):
        for kind in kinds:
            spread = frame[frame["kind"] == kind].groupby("round")[metric].agg(["mean", "std"])
            text = (
                (100 * spread["mean"]).map("{:.2f}".format)
                + " ± "
                + (100 * spread["std"].fillna(0)).map("{:.2f}".format)
            )
            table[f"{kind} {label}"] = text
    table["seeds"] = frame.groupby("round")["seed"].nunique()
    markdown = table.fillna("").reset_index().to_markdown(index=False, disable_numparse=True)
    return markdown + divergence_note(frame) + _margins(frame)


def _margins(frame: pd.DataFrame) -> str:
    """A sentence on the sparsest round: the ticket minus each control and minus the dense network
    (round 0), paired by seed, as the mean and 95% t interval in points."""
    last = int(frame["round"].max())
    of = {(r, kind): rows for (r, kind), rows in frame.groupby(["round", "kind"])}
    if last == 0 or (last, "ticket") not in of:
        return ""
    others = [(kind, of[(last, kind)]) for kind in CONTROLS if (last, kind) in of]
    if (0, "ticket") in of:
        others.append(("the dense network (round 0)", of[(0, "ticket")]))
    if not others:  # tickets trained alone (evalIntegration): nothing to pair them with
        return ""
    parts = []
    for name, other in others:
        texts, pairs = [], []
        for metric, when in (("test_acc_at_early_stop", "at early stop"), ("test_acc", "at the end")):
            differences = stats.paired(of[(last, "ticket")], other, ["seed"], metric)["difference"].to_numpy()
            low, high = stats.t_interval(differences)
            interval = f" [{low:+.2f}, {high:+.2f}]" if len(differences) > 1 else ""
            texts.append(f"{differences.mean():+.2f}{interval} {when}" if len(differences) else f"no pair {when}")
            pairs.append(str(len(differences)))
        seeds = " and ".join(dict.fromkeys(pairs))  # two counts: a diverged run has no final accuracy
        seeds += " seed, no interval" if seeds == "1" else " seeds"
        parts.append(f"{name} {', '.join(texts)} ({seeds})")
    remaining = 100 * of[(last, "ticket")]["weights_remaining"].iloc[0]
    return (
        f"\n\nTickets at round {last} ({remaining:.1f}% of weights remaining) minus, paired by seed "
        "(mean [95% t interval], points): " + "; ".join(parts) + "."
    )
