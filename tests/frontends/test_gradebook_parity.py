"""The TA's walk-through with real nbgrader and SQLite: statuses in the gradebook and the export,
``grade-batch --gradebook`` leaving the gradebook as ``nbgrader autograde`` does (autograded
notebooks for feedback, timestamps and the late policy, a row for every submission), renamed
notebooks refused alike, and stale grades regraded.

One scratch course, one assignment (``01_linear_models``), four students: a perfect submission two
days late, one calling a forbidden routine, one that is not JSON and one renamed. It is copied before
grading: ``nbgrader autograde`` grades one copy, ``grade-batch --gradebook`` the other.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autograder.course import registry
from autograder.report import flags

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSIGNMENT = "01_linear_models"
NOTEBOOK = "linear_models.ipynb"
SEED = 20241204
DUE = "2025-03-01 17:00:00 UTC"
LATE = "2025-03-03 09:00:00 UTC"  # 1 day 16 hours late: two started days
LATE_POLICY = """
c.AssignLatePenalties.plugin_class = PLUGIN + "PerDayLatePenalty"
c.PerDayLatePenalty.per_day = 0.1
c.PerDayLatePenalty.cap = 0.5
"""
FORBIDDEN_SOFTMAX = "def softmax(X):\n    return torch.softmax(X, dim=-1)\n"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(cwd: Path, *args: Any, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if ok:
        assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def _grade_id(cell: dict) -> str | None:
    nbg = cell.get("metadata", {}).get("nbgrader")
    return nbg.get("grade_id") if isinstance(nbg, dict) else None


def _perfect(root: Path, **replace: str) -> dict:
    release = json.loads((root / "assignments" / ASSIGNMENT / NOTEBOOK).read_text(encoding="utf-8"))
    solution = json.loads((root / "solutions" / ASSIGNMENT / NOTEBOOK).read_text(encoding="utf-8"))
    answers = {_grade_id(c): "".join(c["source"]) for c in solution["cells"] if _grade_id(c)}
    for cell in release["cells"]:
        name = _grade_id(cell)
        if name in {e.name for e in registry.assignments()[ASSIGNMENT]}:
            cell["source"] = replace.get(name, answers[name])
    return release


def _submit(root: Path, student: str, content: str | dict, name: str = NOTEBOOK, timestamp: str | None = None) -> None:
    folder = root / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(content if isinstance(content, str) else json.dumps(content, indent=1), encoding="utf-8")
    if timestamp:
        (folder / "timestamp.txt").write_text(timestamp + "\n", encoding="utf-8")


def _export(root: Path) -> dict[str, dict[str, str]]:
    _run(root, BIN / "nbgrader", "export", "--to", "grades.csv")
    with open(root / "grades.csv", newline="", encoding="utf-8") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle)}


def _gradebook(root: Path, db: str = "gradebook.db") -> dict[str, Any]:
    """student -> what the gradebook holds for them: scores, manual flags, comments, penalty."""
    from nbgrader.api import Gradebook

    out: dict[str, Any] = {}
    with Gradebook(f"sqlite:///{root / db}") as gb:
        for student in gb.students:
            try:
                submission = gb.find_submission(ASSIGNMENT, student.id)
            except Exception:  # noqa: BLE001 - no submission
                continue
            [notebook] = submission.notebooks
            out[student.id] = {
                "grades": {g.name: (g.auto_score, g.needs_manual_grade) for g in notebook.grades},
                "comments": {c.name: c.auto_comment for c in notebook.comments if c.auto_comment},
                "flagged": notebook.flagged, "penalty": submission.late_submission_penalty,
                "timestamp": str(submission.timestamp), "score": submission.score,
            }
    return out


@pytest.fixture(scope="module")
def courses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from autograder.sandbox import bubblewrap

    reason = bubblewrap.unavailable_reason()
    if reason:
        pytest.skip(f"official grading needs the sandbox: {reason}")
    root = tmp_path_factory.mktemp("parity") / "nbgrader"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for package in ("autograder", "reference"):
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    shutil.copytree(REPO / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT, ignore=ignore)
    config = (REPO / "nbgrader_config.py").read_text(encoding="utf-8")
    (root / "nbgrader_config.py").write_text(config + LATE_POLICY + f"c.GradeWithEngine.seed = {SEED}\n", encoding="utf-8")
    _run(root, BIN / "nbgrader", "db", "assignment", "add", ASSIGNMENT, f"--duedate={DUE}")  # as docs/instructors.md says
    _run(root, BIN / "nbgrader", "generate_assignment", ASSIGNMENT)

    _submit(root, "alice", _perfect(root), timestamp=LATE)
    _submit(root, "bob", _perfect(root, softmax=FORBIDDEN_SOFTMAX))
    _submit(root, "carol", "this is not a notebook {")
    _submit(root, "dave", _perfect(root), name="linear_models_final.ipynb")
    batch = root.parent / "batch"
    shutil.copytree(root, batch, symlinks=True)

    logs = {"autograde": _run(root, BIN / "nbgrader", "autograde", ASSIGNMENT, ok=False)}
    logs["batch"] = _run(batch, sys.executable, "-m", "autograder", "grade-batch", ".", "--gradebook",
                         f"sqlite:///{batch / 'gradebook.db'}", "--seed", SEED, "--workers", 1, "--report",
                         batch / "reports", "--first-slot", 70, ok=False)
    for name in ("nbgrader", "batch"):
        folder = root if name == "nbgrader" else batch
        (folder / f"{name}.log").write_text(logs["autograde" if name == "nbgrader" else "batch"].stdout
                                            + logs["autograde" if name == "nbgrader" else "batch"].stderr)
    return {"nbgrader": root, "batch": batch}


def test_batch_gradebook_is_the_one_nbgrader_autograde_leaves(courses: dict[str, Path]) -> None:
    by_nbgrader, by_batch = _gradebook(courses["nbgrader"]), _gradebook(courses["batch"])
    assert sorted(by_nbgrader) == sorted(by_batch) == ["alice", "bob", "carol", "dave"], (by_nbgrader, by_batch)
    for student in by_nbgrader:
        assert by_batch[student] == by_nbgrader[student], student


def test_statuses_reach_the_gradebook(courses: dict[str, Path]) -> None:
    book = _gradebook(courses["batch"])
    alice, bob, carol, dave = (book[s] for s in ("alice", "bob", "carol", "dave"))
    assert alice["grades"] == {"test_softmax": (10.0, False), "test_cross_entropy": (10.0, False)}
    assert not alice["flagged"] and not alice["comments"]
    # forbidden: scored 0, marked for manual grading, the reason as the solution cell's comment
    assert bob["grades"]["test_softmax"] == (0.0, True) and bob["grades"]["test_cross_entropy"] == (10.0, False)
    assert bob["flagged"] and flags.parse(bob["comments"]["softmax"]) == [("forbidden", "softmax")]
    assert "torch.softmax" in bob["comments"]["softmax"]
    # not a notebook, renamed: no score at all (never a real 0), for manual grading, with the reason
    for student, words in ((carol, "not JSON"), (dave, "renamed notebook: `linear_models_final.ipynb`")):
        assert all(score is None and manual for score, manual in student["grades"].values()), student
        assert student["flagged"] and words in " ".join(student["comments"].values())


def test_export_has_a_status_column_and_no_false_zero(courses: dict[str, Path]) -> None:
    for course in courses.values():
        rows = _export(course)
        assert rows["alice"]["status"].startswith("graded; late") and rows["alice"]["softmax"] == "10.0"
        assert rows["bob"]["status"] == "forbidden: softmax" and rows["bob"]["softmax"] == "0.0"
        for student in ("carol", "dave"):
            assert rows[student]["status"] == "unusable", rows[student]
            assert rows[student]["score"] == rows[student]["softmax"] == rows[student]["cross_entropy"] == ""


def test_renamed_notebook_is_refused_with_the_same_message_everywhere(courses: dict[str, Path]) -> None:
    batch = courses["batch"]
    [record] = [json.loads(p.read_text()) for p in (batch / "reports" / "submissions").glob("dave*.json")]
    message = record["message"]
    assert record["status"] == "unusable" and message.startswith("renamed notebook: `linear_models_final.ipynb`")
    assert message in _gradebook(courses["nbgrader"])["dave"]["comments"]["softmax"]
    done = _run(batch, sys.executable, "-m", "autograder", "grade",
                batch / "submitted" / "dave" / ASSIGNMENT / "linear_models_final.ipynb", ok=False)
    assert done.returncode == 2 and message in done.stderr


def test_late_penalty_from_timestamp_txt_alike(courses: dict[str, Path]) -> None:
    for course in courses.values():
        alice = _gradebook(course)["alice"]
        assert alice["timestamp"].startswith("2025-03-03 09:00:00")
        assert alice["penalty"] == pytest.approx(4.0)  # two started days at 10 % of 20 points


def test_feedback_after_grade_batch(courses: dict[str, Path]) -> None:
    batch = courses["batch"]
    autograded = batch / "autograded" / "alice" / ASSIGNMENT
    assert (autograded / NOTEBOOK).is_file() and (autograded / "timestamp.txt").is_file()
    assert not (batch / "autograded" / "carol" / ASSIGNMENT / NOTEBOOK).exists()
    _run(batch, BIN / "nbgrader", "generate_feedback", ASSIGNMENT)
    html = (batch / "feedback" / "alice" / ASSIGNMENT / "linear_models.html").read_text(encoding="utf-8")
    assert "softmax: 10 / 10 points" in html and "BEGIN HIDDEN TESTS" not in html
    assert "hidden_tests_run_by_the_grader" not in html


def test_stale_grades_are_named_and_regraded(courses: dict[str, Path]) -> None:
    """Points change: grade-batch says who is stale and regrades; nbgrader autograde warns and regrades."""
    for name, course in courses.items():
        registry_file = course / "autograder" / "course" / "registry.py"
        text = registry_file.read_text(encoding="utf-8")
        changed = re.sub(r"tests=_tests\(values=2, gradient=2", "tests=_tests(values=3, gradient=2", text, count=1)
        assert changed != text
        registry_file.write_text(changed, encoding="utf-8")
        if name == "batch":
            done = _run(course, sys.executable, "-m", "autograder", "grade-batch", ".", "--seed", SEED,
                        "--workers", 1, "--report", course / "reports", "--first-slot", 70, ok=False)
            assert re.search(r"2 stale grades regraded: .*alice/01_linear_models/linear_models.ipynb "
                             r"\(points changed\)", done.stdout), done.stdout + done.stderr[-2000:]
        else:
            done = _run(course, BIN / "nbgrader", "autograde", ASSIGNMENT, ok=False)
            log = done.stdout + done.stderr
            assert "Stale grade: alice/01_linear_models" in log and "Stale grade: bob/01_linear_models" in log, log[-3000:]
            meta = json.loads((course / "autograded" / "alice" / ASSIGNMENT / NOTEBOOK).read_text())["metadata"]
            assert meta["autograder"]["result"]["exercises"][0]["max_score"] == 11
