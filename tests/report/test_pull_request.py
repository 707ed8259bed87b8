"""The report of a pull request's grading (``autograder ci``), from hand-built models: the total,
the minimum score, the status and exit status, the Markdown comment and the JSON.

Git, the classification of changes and grading are the front end's: ``tests/frontends/test_ci.py``
runs the whole command on scratch repositories.
"""

from __future__ import annotations

import json

import pytest

from autograder.errors import INTERNAL
from autograder.report import pull_request as pr
from autograder.report.pull_request import Ignored, Outcome, PullRequestStatus, Report, Submission
from autograder.report.results import ExerciseResult, NotebookResult
from autograder.report.results import TestResult as Check  # aliased: pytest would collect a Test* name

EVIL = "x | y <img src=x onerror=alert(1)> @everyone \x1b[31m\u202e```"


def notebook(score: float, max_score: float = 10, official: bool = True) -> NotebookResult:
    status = "passed" if score == max_score else ("partial" if score else "failed")
    test = Check("test_values", score == max_score, score, max_score, "" if score == max_score else "mismatch")
    return NotebookResult("nb.ipynb", [ExerciseResult("softmax", score, max_score, status, [test])], official=official)


def graded(path: str, score: float, max_score: float = 10, official: bool = True) -> Submission:
    return Submission(path, "modified", "01_linear_models", max_score, Outcome.GRADED, "", notebook(score, max_score, official))


def test_outcomes_are_typed_and_serialise_as_their_values() -> None:
    submission = Submission("a.ipynb", "added", "01_linear_models", 10, "unusable", "not JSON")
    assert submission.outcome is Outcome.UNUSABLE
    with pytest.raises(ValueError):
        Submission("a.ipynb", "added", "01_linear_models", 10, "bogus")
    data = pr.as_json(Report(submissions=[submission]))
    assert data["notebooks"][0]["outcome"] == "unusable" and type(data["notebooks"][0]["outcome"]) is str
    assert data["status"] == "graded" and type(data["status"]) is str


def test_only_submitted_notebooks_are_scored() -> None:
    report = Report(submissions=[
        graded("a.ipynb", 7),
        Submission("b.ipynb", "type changed", "01_linear_models", 20, Outcome.UNUSABLE, "a symbolic link"),
        Submission("c.ipynb", "deleted", "01_linear_models", 30, Outcome.DELETED),
        Submission("d.ipynb", "modified", "01_linear_models", 40, Outcome.NOT_RUN),
    ])
    assert [s.path for s in report.scored] == ["a.ipynb", "b.ipynb"]
    assert report.score == 7 and report.max_score == 30  # an unusable notebook counts as 0 of its points
    assert report.status is PullRequestStatus.GRADED and report.exit_code == pr.EXIT_OK
    rows = pr.as_json(report)["notebooks"]
    assert [r["score"] for r in rows] == [7, 0, None, None]
    assert [r["max_score"] for r in rows] == [10, 20, 30, 40]


@pytest.mark.parametrize(("report", "status", "exit_code"), [
    (Report(), PullRequestStatus.NOTHING_TO_GRADE, pr.EXIT_OK),
    (Report(submissions=[Submission("c.ipynb", "deleted", "a", 10, Outcome.DELETED)]),
     PullRequestStatus.NOTHING_TO_GRADE, pr.EXIT_OK),
    (Report(min_score=80, submissions=[graded("a.ipynb", 7)]), PullRequestStatus.GRADED, pr.EXIT_BELOW_MIN_SCORE),
    (Report(min_score=70, submissions=[graded("a.ipynb", 7)]), PullRequestStatus.GRADED, pr.EXIT_OK),
    (Report(min_score=80, submissions=[graded("a.ipynb", 7), Submission("b.ipynb", "added", "a", 10, Outcome.ERROR)]),
     PullRequestStatus.GRADED, pr.EXIT_INTERNAL),
    (Report(failure="no sandbox", submissions=[Submission("b.ipynb", "added", "a", 10, Outcome.ERROR)]),
     PullRequestStatus.NOT_GRADED, pr.EXIT_CANNOT_GRADE),
])
def test_status_and_exit_status(report: Report, status: PullRequestStatus, exit_code: int) -> None:
    # When several apply: could not grade (2), then a grader bug (1), then below the minimum (3).
    assert report.status is status and report.exit_code == exit_code
    data = pr.as_json(report)
    assert data["status"] == status.value and data["exit_code"] == exit_code and data["schema"] == pr.SCHEMA


def test_markdown_overview() -> None:
    report = Report(base="b" * 40, head="h" * 40, merge_base="m" * 40, min_score=50, submissions=[
        graded("full.ipynb", 10),
        graded("half.ipynb", 5, official=False),
        graded("zero.ipynb", 0),
        Submission("bad.ipynb", "type changed", "a", 10, Outcome.UNUSABLE, EVIL),
        Submission("bug.ipynb", "modified", "a", 10, Outcome.ERROR, f"{INTERNAL}: KeyError"),
        Submission("gone.ipynb", "deleted", "a", 10, Outcome.DELETED),
        Submission("late.ipynb", "modified", "a", 10, Outcome.NOT_RUN),
    ])
    md = pr.markdown(report)
    lines = md.splitlines()
    assert lines[0] == pr.COMMENT_MARKER
    assert f"`{'h' * 12}` changes since `{'m' * 12}`" in md
    for row in ["| full\\.ipynb | modified | ✅ graded | 10 / 10 |",
                "| half\\.ipynb | modified | 🟡 graded (unofficial) | 5 / 10 |",
                "| zero\\.ipynb | modified | ❌ graded | 0 / 10 |",
                "| bad\\.ipynb | type changed | ⚠️ could not be graded | 0 / 10 |",
                f"| bug\\.ipynb | modified | 💥 {INTERNAL} | — |",
                "| gone\\.ipynb | deleted | 🗑️ deleted, not graded | — |",
                "| late\\.ipynb | modified | ⏸️ not graded | — |",
                "| **Total** | | | **15 / 40** |"]:
        assert row in lines
    assert "Minimum score: 50 % of each notebook — ❌ not reached by zero\\.ipynb, bad\\.ipynb." in lines
    # One section per graded notebook, as `grade --format markdown` renders it; then the problems.
    assert md.count("## Autograder: ") == 3 and "### Could not be graded" in md
    assert "**bad\\.ipynb**" in lines and "**bug\\.ipynb**" in lines
    assert "\x1b" not in md and "\u202e" not in md


def test_markdown_without_anything_to_grade_and_when_grading_could_not_run() -> None:
    assert "nothing to grade" in pr.markdown(Report())
    md = pr.markdown(Report(failure=f"sandbox unavailable: {EVIL}"))
    assert "**Grading could not run**" in md and "nothing to grade" not in md
    assert "<img" not in md and "\\@everyone" in md


def test_changes_are_listed_up_to_a_limit() -> None:
    others = [Ignored(f"file{i}.py", "added") for i in range(pr.JSON_LIST_LIMIT + 5)]
    notebooks = [Ignored("assignments/x/copy.ipynb", "added", "not one of the course's notebooks")]
    report = Report(ignored_notebooks=notebooks, other_changes=others)
    md = pr.markdown(report)
    assert "- added: assignments/x/copy\\.ipynb — not one of the course's notebooks" in md
    assert "- added: file49\\.py" in md and "- added: file50\\.py" not in md
    assert f"- … and {len(others) - pr.LIST_LIMIT} more" in md
    data = pr.as_json(report)
    assert len(data["other_changes"]) == pr.JSON_LIST_LIMIT and data["other_changes_total"] == len(others)
    assert data["ignored_notebooks"] == [{"path": "assignments/x/copy.ipynb", "change": "added",
                                          "reason": "not one of the course's notebooks"}]


def test_a_report_too_long_for_a_comment_keeps_the_overview() -> None:
    long = NotebookResult("nb.ipynb", [ExerciseResult("softmax", 0, 10, "failed", [
        Check(f"test_{i}", False, 0, 1, "中" * 1500) for i in range(60)])])
    report = Report(submissions=[Submission(f"n{i}.ipynb", "added", "a", 10, Outcome.GRADED, "", long)
                                 for i in range(3)])
    md = pr.markdown(report)
    assert len(md.encode()) <= pr.COMMENT_LIMIT and md.splitlines()[0] == pr.COMMENT_MARKER
    assert "too long for a comment" in md and "| **Total** | | | **0 / 30** |" in md
    # The JSON keeps everything, and is valid JSON.
    assert len(json.dumps(pr.as_json(report), allow_nan=False)) > pr.COMMENT_LIMIT
