"""The README and docs/ show commands that work: every `lthutils` command line parses with the real
parser, every make target exists, every script shown runs its --help, every Python block
compiles, and docs/REFERENCE.md is what the code says."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lthutils.__main__ import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(language: str) -> list[tuple[str, str]]:
    """(page, block text) of every fenced block of `language` in the README and docs/."""
    found = []
    for page in PAGES:
        for block in re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M):
            found.append((page.name, block))
    return found


def command_lines() -> list[tuple[str, list[str]]]:
    """(page, words) of every command in a sh block (continuation lines joined, comments dropped)
    and of every inline code span that runs the command line (`python -m lthutils ...`)."""
    commands = []
    for page, block in blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append((page, words))
    for page in [page for page in PAGES if page.name != "REFERENCE.md"]:  # its headings name commands
        prefix = r"(?:[A-Z_]+=\S+ )*(?:taskset -c \d+ )?(?:\.venv/bin/)?"
        for span in re.findall(rf"`({prefix}python -m lthutils [^`]*)`", page.read_text()):
            commands.append((page.name, shlex.split(span.replace("\n", " "))))
    return commands


def lthutils_arguments(words: list[str]) -> list[str] | None:
    """The arguments after `python -m lthutils` or `lthutils` (after any env or taskset prefix)."""
    for index, word in enumerate(words):
        if word == "lthutils" and index > 0 and words[index - 1] == "-m":
            return words[index + 1 :]
        if word == "lthutils" and index == 0:
            return words[1:]
    return None


def test_the_docs_show_commands_at_all():
    shown = [words for _, words in command_lines() if lthutils_arguments(words) is not None]
    assert len(shown) >= 20  # the pages do show the command line; the checks below are not vacuous


def test_every_lthutils_command_shown_parses():
    parser = build_parser()
    for page, words in command_lines():
        arguments = lthutils_arguments(words)
        if arguments is None or "--help" in arguments:
            continue
        try:
            parser.parse_args(arguments)
        except Exception as error:  # the parser raises on any flag or value it cannot read
            pytest.fail(f"{page}: {shlex.join(words)}: {error}")


def test_every_make_target_and_script_shown_exists():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    scripts = set()
    for page, words in command_lines():
        if words[0] == "make":
            assert set(words[1:]) <= targets, f"{page}: {shlex.join(words)}"
        scripts |= {word for word in words if re.fullmatch(r"(scripts|bench)/\w+\.py", word)}
    assert scripts, "no script shown"
    for script in sorted(scripts):
        run = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 0 and "usage" in run.stdout, f"{script}: {run.stderr[-500:]}"


def test_every_python_block_compiles():
    shown = blocks("python")
    assert shown
    for page, block in shown:
        compile(block, page, "exec")


def test_the_reference_is_what_the_code_says():
    check = subprocess.run(
        [sys.executable, "scripts/reference.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
