"""``python -m autograder ci``: grading a pull request from git, on scratch repositories.

Each test builds a small course repository under ``tmp_path`` (a ``main`` branch with the course's
notebooks, a ``pr`` branch with the student's changes) and grades ``pr`` against ``main``. The
Markdown and JSON reports are parsed back and the exit statuses checked against the policy in
``autograder/report/pull_request.py``: 0 graded whatever the score, 1 grader bug, 2 could not grade,
3 below ``--min-score``. The model and its renderers alone, without git, are
``tests/report/test_pull_request.py``.

Most tests stand a fake engine in for ``autograder.grading.engine`` (the git side and the reports are what
they test); the command-line tests run ``python -m autograder ci`` as CI does, and the slow tests
at the end grade real notebooks in the real sandbox.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autograder.frontends import ci
from autograder.frontends import cli
from autograder.course import registry
from autograder import errors
from autograder.errors import SandboxUnavailable, UnusableInput
from autograder.report import pull_request
from autograder.report.results import ExerciseResult, NotebookResult
from autograder.report.results import TestResult as Outcome  # aliased: pytest would collect a Test* name

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ci.course_notebooks()  # release path -> assignment id
RL = f"assignments/{registry.BY_NAME['q_learning_update'].notebook_path}"
ATTENTION = f"assignments/{registry.BY_NAME['self_attention'].notebook_path}"
SECRET = "s3cr3t-value-that-must-never-appear"


# ------------------------------------------------------------------------------ scratch repositories
def notebook_bytes(marker: str) -> bytes:
    """A small valid notebook whose one code cell says ``marker``."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
                   "source": f"# {marker}\n"}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return (json.dumps(nb, indent=1) + "\n").encode()


class Scratch:
    """A throwaway git repository laid out like the course."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "ci-test@example.invalid")
        self.git("config", "user.name", "CI test")
        self.git("config", "commit.gpgsign", "false")
        for path in NOTEBOOKS:
            self.write(path, notebook_bytes(f"release of {path}"))
        self.write("README.md", "# course\n")
        self.write("autograder/grading/engine.py", "GRADER = 'trusted'\n")
        self.commit("release")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", "-C", str(self.root), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def write(self, path: str, data: bytes | str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)

    def remove(self, path: str) -> None:
        self.git("rm", "-q", "--", path)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def pull_request(self, changes: Callable[["Scratch"], None]) -> str:
        """Commit ``changes`` on a ``pr`` branch, then go back to ``main`` (as a CI checkout is)."""
        self.git("checkout", "-q", "-b", "pr", "main")
        changes(self)
        head = self.commit("student work")
        self.git("checkout", "-q", "main")
        return head


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    return Scratch(tmp_path / "course")


# ------------------------------------------------------------------------------------- fake engine
def result_for(assignment: str, score_fraction: float = 1.0, message: str = "") -> NotebookResult:
    exercises = []
    for exercise in registry.assignments()[assignment]:
        tests = []
        for name, points in exercise.tests.items():
            passed = score_fraction >= 1.0 or (score_fraction > 0 and name == next(iter(exercise.tests)))
            tests.append(Outcome(name, passed, points if passed else 0, points, "" if passed else message or "mismatch"))
        score = sum(t.points for t in tests)
        status = "passed" if score == exercise.points else ("partial" if score else "failed")
        exercises.append(ExerciseResult(exercise.name, score, exercise.points, status, tests))
    return NotebookResult(notebook=registry.assignments()[assignment][0].notebook, assignment=assignment,
                          exercises=exercises)


class FakeEngine(types.ModuleType):
    """Stands in for ``autograder.grading.engine``: records what it was given, does what ``behaviour`` says."""

    def __init__(self) -> None:
        super().__init__("autograder.grading.engine")
        self.calls: list[dict[str, Any]] = []
        self.behaviour: Callable[[Path, dict[str, Any]], NotebookResult] = lambda path, kw: result_for(kw["assignment"])

    def grade_notebook(self, path: Any, **kwargs: Any) -> NotebookResult:
        from autograder.submission.notebook import Submitted

        assert isinstance(path, Submitted), "CI grades the bytes it read from git, never a file"
        self.calls.append({"path": Path(path.name), "bytes": path.data, **kwargs})
        return self.behaviour(Path(path.name), kwargs)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setitem(sys.modules, "autograder.grading.engine", fake)
    monkeypatch.delenv("AUTOGRADER_DEBUG", raising=False)
    return fake


def run_ci(scratch: Scratch, tmp_path: Path, *extra: str, base: str = "main", head: str = "pr") -> tuple[int, str, dict]:
    """``autograder ci`` in this process (through the real command line); (status, markdown, json)."""
    md, js = tmp_path / "report.md", tmp_path / "report.json"
    status = cli.main(["ci", "--repo", str(scratch.root), f"--base={base}", f"--head={head}",
                       "--markdown", str(md), "--json", str(js), *extra])
    return status, md.read_text(encoding="utf-8"), json.loads(js.read_text(encoding="utf-8"))


def by_path(report: dict) -> dict[str, dict]:
    return {n["path"]: n for n in report["notebooks"]}


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The overview table: first cell (unescaped) -> the other cells."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| Notebook") and not line.startswith("|---"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows[re.sub(r"\\(.)", r"\1", cells[0])] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


# ------------------------------------------------------------------------- fake engine: the cases
def test_one_notebook_is_read_from_the_head_as_data_and_graded(scratch: Scratch, tmp_path: Path,
                                                               engine: FakeEngine) -> None:
    submitted = notebook_bytes("my q-learning")
    head = scratch.pull_request(lambda s: s.write(RL, submitted))
    status, md, report = run_ci(scratch, tmp_path)

    assert status == errors.EXIT_OK
    assert len(engine.calls) == 1
    call = engine.calls[0]
    # The head's bytes, not the checked-out main's; official grading; the assignment from the path.
    assert call["bytes"] == submitted
    assert (scratch.root / RL).read_bytes() != submitted
    assert call["sandbox"] is True and call["assignment"] == NOTEBOOKS[RL]
    assert call["path"].name == Path(RL).name and not call["path"].is_relative_to(scratch.root)

    assert md.splitlines()[0] == pull_request.COMMENT_MARKER
    assert table_rows(md)[RL][:3] == ["modified", "✅ graded", "10 / 10"]
    assert "## Autograder: assignments/07\\_rl/rl\\.ipynb — 10 / 10" in md
    assert head[:12] in md

    assert report["schema"] == pull_request.SCHEMA and report["status"] == "graded" and report["exit_code"] == 0
    assert report["head"] == head and report["base"] == scratch.git("rev-parse", "main")
    notebook = by_path(report)[RL]
    assert notebook["outcome"] == "graded" and notebook["change"] == "modified"
    assert notebook["score"] == notebook["max_score"] == registry.BY_NAME["q_learning_update"].points
    assert notebook["result"]["notebook"] == RL
    assert [e["name"] for e in notebook["result"]["exercises"]] == ["q_learning_update"]
    assert report["other_changes"] == [] and report["ignored_notebooks"] == []


def test_grading_never_touches_the_repository(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    scratch.pull_request(lambda s: s.write(RL, notebook_bytes("work")))
    before = (scratch.git("rev-parse", "HEAD"), scratch.git("symbolic-ref", "HEAD"), scratch.git("status", "--porcelain"),
              scratch.git("for-each-ref"))
    run_ci(scratch, tmp_path)
    after = (scratch.git("rev-parse", "HEAD"), scratch.git("symbolic-ref", "HEAD"), scratch.git("status", "--porcelain"),
             scratch.git("for-each-ref"))
    assert after == before


def test_several_notebooks_each_graded_with_a_total(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    def work(s: Scratch) -> None:
        s.write(RL, notebook_bytes("rl"))
        s.write(ATTENTION, notebook_bytes("attention"))

    scratch.pull_request(work)
    engine.behaviour = lambda path, kw: result_for(kw["assignment"], 1.0 if kw["assignment"] == NOTEBOOKS[RL] else 0.0)
    status, md, report = run_ci(scratch, tmp_path)

    assert status == errors.EXIT_OK  # a zero is a score, not a red build
    assert sorted(c["assignment"] for c in engine.calls) == sorted([NOTEBOOKS[RL], NOTEBOOKS[ATTENTION]])
    rl_max = registry.BY_NAME["q_learning_update"].points
    att_max = sum(e.points for e in registry.assignments()[NOTEBOOKS[ATTENTION]])
    rows = table_rows(md)
    assert rows[RL][1:3] == ["✅ graded", f"{rl_max} / {rl_max}"]
    assert rows[ATTENTION][1:3] == ["❌ graded", f"0 / {att_max}"]
    assert rows["**Total**"][2] == f"**{rl_max} / {rl_max + att_max}**"
    assert report["score"] == rl_max and report["max_score"] == rl_max + att_max
    assert set(by_path(report)) == {RL, ATTENTION}
    # The failing exercise's tests and their messages are in the comment.
    assert "<details>" in md and "mismatch" in md


def test_no_notebook_changed_grades_nothing(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    scratch.pull_request(lambda s: s.write("README.md", "# my notes\n"))
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK and engine.calls == []
    assert "nothing to grade" in md
    assert report["status"] == "nothing_to_grade" and report["notebooks"] == []
    assert report["score"] == 0 and report["max_score"] == 0
    assert report["other_changes"] == [{"path": "README.md", "change": "modified", "reason": ""}]


def test_a_deleted_notebook_is_reported_not_graded(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    scratch.pull_request(lambda s: s.remove(RL))
    status, md, report = run_ci(scratch, tmp_path, "--min-score", "50")
    assert status == errors.EXIT_OK and engine.calls == []  # nothing submitted, so no minimum to miss
    assert table_rows(md)[RL][:3] == ["deleted", "🗑️ deleted, not graded", "—"]
    notebook = by_path(report)[RL]
    assert notebook["outcome"] == "deleted" and notebook["score"] is None
    assert report["status"] == "nothing_to_grade"
    assert report["max_score"] == 0


def test_changes_outside_notebooks_are_reported_not_executed(scratch: Scratch, tmp_path: Path,
                                                             engine: FakeEngine) -> None:
    def work(s: Scratch) -> None:
        s.write("assignments/07_rl/helper.py", "import os\nos.system('touch PWNED')\n")
        s.write("autograder/grading/engine.py", "open('PWNED', 'w').write('grader replaced')\n")
        s.write("conftest.py", "open('PWNED', 'w').write('conftest')\n")
        s.write(".github/workflows/grade-pr.yml", "on: push\n")

    scratch.pull_request(work)
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK and engine.calls == []
    listed = {c["path"]: c["change"] for c in report["other_changes"]}
    assert listed == {"assignments/07_rl/helper.py": "added", "autograder/grading/engine.py": "modified",
                      "conftest.py": "added", ".github/workflows/grade-pr.yml": "added"}
    assert report["other_changes_total"] == 4
    assert "### Other changes (reported, not run)" in md
    assert "autograder/grading/engine\\.py" in md
    assert not list(scratch.root.rglob("PWNED")) and not (ROOT / "PWNED").exists()


def test_other_notebooks_under_assignments_are_not_graded(scratch: Scratch, tmp_path: Path,
                                                          engine: FakeEngine) -> None:
    scratch.pull_request(lambda s: s.write("assignments/07_rl/rl-copy.ipynb", notebook_bytes("copy")))
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK and engine.calls == []
    [ignored] = report["ignored_notebooks"]
    assert ignored["path"] == "assignments/07_rl/rl-copy.ipynb" and "not one of the course's notebooks" in ignored["reason"]
    assert "### Notebooks not graded" in md and RL.replace("_", "\\_").replace(".", "\\.") in md


def test_changes_on_the_base_branch_since_the_fork_are_not_the_students(scratch: Scratch, tmp_path: Path,
                                                                        engine: FakeEngine) -> None:
    scratch.pull_request(lambda s: s.write(RL, notebook_bytes("student")))
    scratch.write(ATTENTION, notebook_bytes("instructor fix after the fork"))
    scratch.commit("instructor update")
    status, _, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK
    assert set(by_path(report)) == {RL}
    assert report["merge_base"] != report["base"]


def test_notebook_messages_do_not_name_the_temporary_copy(scratch: Scratch, tmp_path: Path,
                                                          engine: FakeEngine) -> None:
    def unusable(path: Path, kw: dict[str, Any]) -> NotebookResult:
        raise UnusableInput(f"{path}: not a notebook (the file is not JSON)")

    engine.behaviour = unusable
    scratch.pull_request(lambda s: s.write(RL, b"not json at all"))
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK  # the student's to fix, not an infrastructure failure
    notebook = by_path(report)[RL]
    assert notebook["outcome"] == "unusable" and notebook["score"] == 0
    assert notebook["max_score"] == registry.BY_NAME["q_learning_update"].points
    assert notebook["message"] == f"{RL}: not a notebook (the file is not JSON)"
    assert "autograder-ci-" not in md and "### Could not be graded" in md
    assert table_rows(md)[RL][1:3] == ["⚠️ could not be graded", "0 / 10"]


def test_min_score(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    scratch.pull_request(lambda s: s.write(RL, notebook_bytes("half")))
    engine.behaviour = lambda path, kw: result_for(kw["assignment"], 0.5)
    points = registry.BY_NAME["q_learning_update"]
    first = next(iter(points.tests.values()))
    percent = 100 * first / points.points

    status, md, report = run_ci(scratch, tmp_path, "--min-score", f"{percent + 1}")
    assert status == errors.EXIT_BELOW_MIN_SCORE
    assert report["below_min_score"] == [RL] and report["exit_code"] == errors.EXIT_BELOW_MIN_SCORE
    assert "not reached by" in md

    status, md, report = run_ci(scratch, tmp_path, "--min-score", f"{percent}")
    assert status == errors.EXIT_OK and report["below_min_score"] == [] and "✅ reached" in md

    status, _, _ = run_ci(scratch, tmp_path)  # without --min-score, any score passes
    assert status == errors.EXIT_OK


def test_no_sandbox_fails_closed_and_says_so(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    def no_sandbox(path: Path, kw: dict[str, Any]) -> NotebookResult:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")

    engine.behaviour = no_sandbox
    scratch.pull_request(lambda s: (s.write(RL, notebook_bytes("a")), s.write(ATTENTION, notebook_bytes("b"))))
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_CANNOT_GRADE
    assert len(engine.calls) == 1  # nothing more is tried once the sandbox is gone
    assert report["status"] == "not_graded" and "bubblewrap" in report["failure"]
    assert {n["outcome"] for n in report["notebooks"]} == {"not_run"}
    assert "**Grading could not run**" in md and "not your fault" in md


def test_a_grader_bug_is_exit_1_and_the_other_notebooks_are_still_graded(scratch: Scratch, tmp_path: Path,
                                                                         engine: FakeEngine) -> None:
    def buggy(path: Path, kw: dict[str, Any]) -> NotebookResult:
        if kw["assignment"] == NOTEBOOKS[RL]:
            raise KeyError("oops")
        return result_for(kw["assignment"])

    engine.behaviour = buggy
    scratch.pull_request(lambda s: (s.write(RL, notebook_bytes("a")), s.write(ATTENTION, notebook_bytes("b"))))
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_INTERNAL
    notebooks = by_path(report)
    assert notebooks[RL]["outcome"] == "error" and "not your fault" in notebooks[RL]["message"]
    assert notebooks[ATTENTION]["outcome"] == "graded"
    assert "not your fault" in md


@pytest.mark.parametrize(("base", "head"), [("main", "no-such-branch"), ("no-such-branch", "pr"), ("--output=/dev/null", "pr"), ("main", "-p")])
def test_a_bad_ref_cannot_be_graded(scratch: Scratch, tmp_path: Path, engine: FakeEngine, base: str, head: str) -> None:
    scratch.pull_request(lambda s: s.write(RL, notebook_bytes("a")))
    status, md, report = run_ci(scratch, tmp_path, base=base, head=head)
    assert status == errors.EXIT_CANNOT_GRADE and engine.calls == []
    assert report["status"] == "not_graded" and "is not a commit" in report["failure"]
    assert "**Grading could not run**" in md


def test_unrelated_histories_cannot_be_graded(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    scratch.git("checkout", "-q", "--orphan", "pr")
    scratch.write(RL, notebook_bytes("orphan"))
    scratch.commit("unrelated")
    scratch.git("checkout", "-q", "-f", "main")
    status, _, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_CANNOT_GRADE and "no common history" in report["failure"]


# ------------------------------------------------------------------------ malicious pull requests
def test_a_symlink_in_place_of_the_notebook_is_never_followed(scratch: Scratch, tmp_path: Path,
                                                              engine: FakeEngine) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(json.dumps({"cells": [], "secret": SECRET}))

    def work(s: Scratch) -> None:
        (s.root / RL).unlink()
        os.symlink(secret_file, s.root / RL)

    scratch.pull_request(work)
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK and engine.calls == []
    notebook = by_path(report)[RL]
    assert notebook["outcome"] == "unusable" and "symbolic link" in notebook["message"]
    assert notebook["change"] == "type changed" and notebook["score"] == 0
    assert SECRET not in md and SECRET not in json.dumps(report)


def test_hostile_file_names_are_shown_literally(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    names = [
        "assignments/07_rl/$(touch PWNED) `touch PWNED`.ipynb",
        "assignments/07_rl/<img src=x onerror=alert(1)> @everyone #1 | cell.ipynb",
        "notes/\u202egnp.exe ]]> [link](javascript:alert(1)).md",
    ]
    scratch.pull_request(lambda s: [s.write(name, notebook_bytes("x")) for name in names])
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK and engine.calls == []
    reported = {i["path"] for i in report["ignored_notebooks"]} | {c["path"] for c in report["other_changes"]}
    assert reported == {names[0], names[1], "notes/\\u202egnp.exe ]]> [link](javascript:alert(1)).md"}
    assert "<img" not in md and "&lt;img" in md
    assert not re.search(r"(?<!\\)@everyone", md) and "\\@everyone" in md
    assert "\u202e" not in md and "](javascript" not in md
    assert not list(scratch.root.rglob("PWNED")) and not (ROOT / "PWNED").exists()


def test_a_huge_notebook_is_refused_before_it_is_read(scratch: Scratch, tmp_path: Path, engine: FakeEngine,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import autograder.submission.notebook

    monkeypatch.setattr(autograder.submission.notebook, "MAX_NOTEBOOK_BYTES", 1 << 20)
    scratch.pull_request(lambda s: s.write(RL, b"{" + b" " * (2 << 20) + b"}"))
    status, _, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK and engine.calls == []
    notebook = by_path(report)[RL]
    assert notebook["outcome"] == "unusable" and "larger than the 1 MiB limit" in notebook["message"]


def test_a_huge_report_still_fits_in_a_comment(scratch: Scratch, tmp_path: Path, engine: FakeEngine) -> None:
    engine.behaviour = lambda path, kw: result_for(kw["assignment"], 0.0, "中" * 5000 + " `````` " * 200)
    scratch.pull_request(lambda s: [s.write(path, notebook_bytes(path)) for path in NOTEBOOKS])
    status, md, report = run_ci(scratch, tmp_path)
    assert status == errors.EXIT_OK
    assert len(md.encode()) <= pull_request.COMMENT_LIMIT and md.splitlines()[0] == pull_request.COMMENT_MARKER
    assert "too long for a comment" in md
    assert set(table_rows(md)) == set(NOTEBOOKS) | {"**Total**"}
    assert len(report["notebooks"]) == len(NOTEBOOKS)


# --------------------------------------------------------------------- the command line, as CI runs it
def ci_command(scratch: Scratch, tmp_path: Path, *extra: str, head: str = "pr",
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Run from the trusted checkout (ROOT), never from the scratch repository: `python -m` imports
    # from the current directory, and the pull request's copy of the grader must never be imported.
    return subprocess.run(
        [sys.executable, "-m", "autograder", "ci", "--repo", str(scratch.root), "--base", "main", "--head", head,
         "--markdown", str(tmp_path / "report.md"), "--json", str(tmp_path / "report.json"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env,
    )


def reports(tmp_path: Path) -> tuple[str, dict]:
    return ((tmp_path / "report.md").read_text(encoding="utf-8"),
            json.loads((tmp_path / "report.json").read_text(encoding="utf-8")))


def test_command_line_nothing_to_grade(scratch: Scratch, tmp_path: Path) -> None:
    scratch.pull_request(lambda s: (s.write("autograder/grading/engine.py", "open('PWNED', 'w')\n"), s.remove(RL)))
    done = ci_command(scratch, tmp_path)
    assert done.returncode == errors.EXIT_OK, done.stderr
    md, report = reports(tmp_path)
    assert report["status"] == "nothing_to_grade"  # a deletion is reported, with nothing scored
    assert by_path(report)[RL]["outcome"] == "deleted"
    assert [c["path"] for c in report["other_changes"]] == ["autograder/grading/engine.py"]
    assert "exit status 0" in done.stderr.splitlines()[-1]
    assert not (ROOT / "PWNED").exists() and not (scratch.root / "PWNED").exists()


def test_command_line_markdown_on_stdout_when_no_file_is_named(scratch: Scratch) -> None:
    scratch.pull_request(lambda s: s.write("README.md", "changed\n"))
    done = subprocess.run([sys.executable, "-m", "autograder", "ci", "--repo", str(scratch.root), "--base", "main",
                           "--head", "pr"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == errors.EXIT_OK, done.stderr
    assert done.stdout.splitlines()[0] == pull_request.COMMENT_MARKER and "nothing to grade" in done.stdout


def test_command_line_infrastructure_failures_exit_2(scratch: Scratch, tmp_path: Path) -> None:
    done = ci_command(scratch, tmp_path, head="does-not-exist")
    assert done.returncode == errors.EXIT_CANNOT_GRADE
    assert "is not a commit" in done.stderr and "Traceback" not in done.stderr
    assert reports(tmp_path)[1]["status"] == "not_graded"

    not_a_repo = tmp_path / "empty"
    not_a_repo.mkdir()
    done = subprocess.run([sys.executable, "-m", "autograder", "ci", "--repo", str(not_a_repo), "--base", "main"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == errors.EXIT_CANNOT_GRADE and "Traceback" not in done.stderr

    done = ci_command(scratch, tmp_path, "--min-score", "150")
    assert done.returncode == errors.EXIT_CANNOT_GRADE and "percentage" in done.stderr

    done = subprocess.run([sys.executable, "-m", "autograder", "ci", "--repo", str(scratch.root), "--base", "main",
                           "--markdown", str(tmp_path / "missing" / "report.md")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == errors.EXIT_CANNOT_GRADE and "not a directory" in done.stderr


# ------------------------------------------------------------------- slow: real notebooks, real sandbox
def _release_path(assignment: str) -> str:
    return f"{assignment}/{registry.assignments()[assignment][0].notebook}"


def _with_suites() -> list[str]:
    """Assignments whose solution notebook and hidden suites are all in this checkout."""
    out = []
    for assignment, exercises in registry.assignments().items():
        suites = [ROOT / "autograder" / "suites" / f"test_{e.name}.py" for e in exercises]
        if (ROOT / "solutions" / _release_path(assignment)).is_file() and all(s.is_file() for s in suites):
            out.append(assignment)
    return out


@pytest.fixture
def gradable() -> list[str]:
    from autograder.sandbox import bubblewrap as sandbox

    reason = sandbox.unavailable_reason()
    if reason:
        pytest.skip(f"the sandbox cannot run here: {reason}")
    found = _with_suites()
    if not found:
        pytest.skip("no assignment has both its solution notebook and its hidden suites in this checkout yet")
    return found


def _student_version(assignment: str) -> bytes:
    """The released notebook; where it is not generated yet, the solution with its solutions cleared
    the way nbgrader does (the stub of nbgrader_config.py between the solution markers)."""
    released = ROOT / "assignments" / _release_path(assignment)
    if released.is_file():
        return released.read_bytes()
    stub = "    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    text = (ROOT / "solutions" / _release_path(assignment)).read_text(encoding="utf-8")
    nb = json.loads(text)
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cleared = re.sub(r"^[ \t]*### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", stub, source, flags=re.S | re.M)
        cell["source"] = cleared
    return json.dumps(nb).encode()


def _prefer_rl(assignments: list[str]) -> str:
    return NOTEBOOKS[RL] if NOTEBOOKS[RL] in assignments else assignments[0]


@pytest.mark.slow
def test_real_grading_solutions_get_full_marks(tmp_path: Path, gradable: list[str]) -> None:
    picked = gradable[:2]  # several notebooks in one pull request, where two are available
    scratch = Scratch(tmp_path / "course")
    scratch.pull_request(lambda s: [s.write(f"assignments/{_release_path(a)}",
                                            (ROOT / "solutions" / _release_path(a)).read_bytes()) for a in picked])
    done = ci_command(scratch, tmp_path)
    assert done.returncode == errors.EXIT_OK, done.stderr
    md, report = reports(tmp_path)
    for assignment in picked:
        notebook = by_path(report)[f"assignments/{_release_path(assignment)}"]
        assert notebook["outcome"] == "graded", notebook["message"]
        assert notebook["result"]["official"] is True
        assert notebook["score"] == notebook["max_score"] > 0, json.dumps(notebook["result"], indent=1)
    assert report["score"] == report["max_score"]
    assert md.count("✅ graded") == len(picked)


@pytest.mark.slow
def test_real_grading_the_stub_scores_zero_and_exit_0_unless_min_score(tmp_path: Path, gradable: list[str]) -> None:
    assignment = _prefer_rl(gradable)
    path = f"assignments/{_release_path(assignment)}"
    scratch = Scratch(tmp_path / "course")
    scratch.pull_request(lambda s: s.write(path, _student_version(assignment)))
    done = ci_command(scratch, tmp_path)
    assert done.returncode == errors.EXIT_OK, done.stderr
    md, report = reports(tmp_path)
    notebook = by_path(report)[path]
    assert notebook["outcome"] == "graded" and notebook["score"] == 0
    assert {e["status"] for e in notebook["result"]["exercises"]} == {"not_attempted"}
    done = ci_command(scratch, tmp_path, "--min-score", "1")
    assert done.returncode == errors.EXIT_BELOW_MIN_SCORE, done.stderr
    assert reports(tmp_path)[1]["below_min_score"] == [path]


MALICIOUS = '''
import os, socket
leak = os.environ.get("AUTOGRADER_CI_TEST_SECRET", "no-secret")
try:
    with open({canary!r}, "w") as f:
        f.write("escaped the sandbox")
except Exception:
    pass
try:
    hidden = open({suite!r}).read()[:40]
except Exception:
    hidden = "unreadable"
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    network = "reachable"
except Exception:
    network = "unreachable"

def {name}({signature}):
    raise RuntimeError("HIDDENLEAK " + repr(locals()))  # a call's text never reaches the report

raise RuntimeError(f"LEAK[{{leak}}] HIDDEN[{{hidden}}] NET[{{network}}]")  # loading's does
'''


@pytest.mark.slow
def test_real_grading_malicious_notebook(tmp_path: Path, gradable: list[str]) -> None:
    assignment = _prefer_rl(gradable)
    exercises = registry.assignments()[assignment]
    nb = json.loads((ROOT / "solutions" / _release_path(assignment)).read_text(encoding="utf-8"))
    canary = tmp_path / "canary.txt"
    suite = ROOT / "autograder" / "suites" / f"test_{exercises[0].name}.py"
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if grade_id in {e.name for e in exercises}:
            e = registry.BY_NAME[grade_id]
            cell["source"] = MALICIOUS.format(canary=str(canary), suite=str(suite), name=e.name, signature=e.signature)
        if grade_id.startswith("test_"):
            cell["metadata"]["nbgrader"]["points"] = 1000  # a lie the grader must ignore
    path = f"assignments/{_release_path(assignment)}"
    scratch = Scratch(tmp_path / "course")
    scratch.pull_request(lambda s: (s.write(path, json.dumps(nb)),
                                    s.write("autograder/grading/engine.py", "raise SystemExit('pwned grader')\n")))
    env = {**os.environ, "AUTOGRADER_CI_TEST_SECRET": SECRET}
    done = ci_command(scratch, tmp_path, env=env)
    assert done.returncode == errors.EXIT_OK, done.stderr
    md, report = reports(tmp_path)
    notebook = by_path(report)[path]
    assert notebook["outcome"] == "graded"
    assert notebook["score"] == 0 and notebook["max_score"] == sum(e.points for e in exercises)
    text = md + json.dumps(report)
    assert SECRET not in text and SECRET not in done.stdout + done.stderr
    # The code ran (its exception is the feedback), without the secret, the suites or the network.
    assert "LEAK[no-secret]" in text and "HIDDEN[unreadable]" in text and "NET[unreachable]" in text
    assert "HIDDENLEAK" not in text  # the hidden inputs a call received
    assert not canary.exists()
    assert [c["path"] for c in report["other_changes"]] == ["autograder/grading/engine.py"]
