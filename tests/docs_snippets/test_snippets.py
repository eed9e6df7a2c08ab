"""Every Python and shell snippet in README.md and docs/ is either run here against a
real cluster or says in the Markdown why it cannot be.

A fenced ``python``/``bash``/``sh`` block is preceded by ``<!-- snippet: run -->`` or
``<!-- snippet: skip (why) -->``. Runnable ones run in the folder of a real
``python -m eventsrc.coordinator`` (embedded server, local node with ``python``), as a
reader who typed them would: the CLI finds the cluster through ``./.eventsrc/url``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import CLEAN_ENV, DEADLINE_S
from tests.processes import program

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
LANGUAGES = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w+)\s*$")
MARK = re.compile(r"^\s*<!-- snippet: (?P<verdict>run|skip \((?P<why>.+)\)) -->\s*$")


@dataclass(frozen=True)
class Snippet:
    where: str
    language: str
    code: str
    verdict: str  # "run", "skip", or "" when unmarked
    why: str


def snippets() -> Iterator[Snippet]:
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            language = LANGUAGES.get(fence["lang"])
            if language is not None:
                before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
                mark = MARK.match(before)
                verdict = "" if mark is None else mark["verdict"].split(" ")[0]
                yield Snippet(
                    where=f"{path.relative_to(REPO)}:{i + 1}",
                    language=language,
                    code=textwrap.dedent("\n".join(lines[i + 1 : end])),
                    verdict=verdict,
                    why=(mark["why"] or "") if mark else "",
                )
            i = end + 1


ALL = list(snippets())
RUNNABLE = [s for s in ALL if s.verdict == "run"]


def test_every_snippet_is_run_or_says_why_not() -> None:
    unmarked = [s.where for s in ALL if not s.verdict]
    assert not unmarked, (
        "mark these with <!-- snippet: run --> or <!-- snippet: skip (why) -->: "
        + ", ".join(unmarked)
    )
    assert all(s.why.strip() for s in ALL if s.verdict == "skip")
    assert len(RUNNABLE) >= 5


@pytest.fixture(scope="module")
def cluster_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder where ``python -m eventsrc.coordinator`` runs, as the quick start says."""
    folder = tmp_path_factory.mktemp("reader")
    with program(
        ["-m", "eventsrc.coordinator", "--embedded-port", "0"], cwd=folder, env=CLEAN_ENV
    ) as coordinator:
        coordinator.wait_for_line("local node", timeout=DEADLINE_S)
        yield folder


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[s.where for s in RUNNABLE])
def test_a_runnable_snippet_runs(snippet: Snippet, cluster_folder: Path) -> None:
    scripts = Path(sys.executable).parent  # eventsrc, replay_tools: as after pip install
    env = {**os.environ, **CLEAN_ENV, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    argv = (
        [sys.executable, "-c", snippet.code]
        if snippet.language == "python"
        else ["bash", "-e", "-o", "pipefail", "-c", snippet.code]
    )
    done = subprocess.run(
        argv,
        cwd=cluster_folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{snippet.where}:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
