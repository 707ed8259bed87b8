"""The grading of a pull request (``python -m autograder ci``): its model and its two reports.

:class:`Report` holds what came of each change the pull request makes: the course notebooks it
submitted (:class:`Submission`, each with an :class:`Outcome` and, when graded, the engine's
:class:`~autograder.report.results.NotebookResult`), the other notebooks and other changes it only
lists (:class:`Ignored`), and why grading could not run at all. The model decides the total, the
minimum-score check, the :class:`PullRequestStatus` and the exit status; :func:`markdown` renders
the job summary and pull-request comment, :func:`as_json` the same as data (schema
:data:`SCHEMA`). Reading git, classifying the changes and grading are the front end's
(``autograder/frontends/ci.py``).

Exit statuses (the same numbers as the other commands, plus one): 0 grading completed, whatever
the scores; 1 a grader bug while grading some notebook; 2 the pull request could not be graded at
all; 3 a submitted notebook scored below ``--min-score``. When several apply, the first in the
order 2, 1, 3 wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Sequence

from autograder.errors import EXIT_BELOW_MIN_SCORE, EXIT_CANNOT_GRADE, EXIT_INTERNAL, EXIT_OK, INTERNAL
from autograder.report.common import clip, fraction, visible
from autograder.report.json import as_data
from autograder.report.markdown import STATUS_EMOJI, code_block, inline
from autograder.report.markdown import render as notebook_section
from autograder.report.results import NotebookResult, Status


#: First line of the Markdown report; the workflow finds its own comment by it and updates it.
COMMENT_MARKER = "<!-- autograder-ci -->"
#: UTF-8 bytes of the Markdown. GitHub refuses comments over 65,536 characters, and the workflow
#: passes the report base64-encoded through an environment variable (at most 128 KiB on Linux);
#: past this the per-exercise details are left to the JSON report.
COMMENT_LIMIT = 60_000
#: Changes listed by name in the Markdown (the JSON keeps up to JSON_LIST_LIMIT).
LIST_LIMIT = 50
JSON_LIST_LIMIT = 1000
SCHEMA = "autograder-ci/1"


class Outcome(StrEnum):
    """What came of a changed course notebook. A ``str``: compares, formats and serialises as its value."""

    PENDING = "pending"  # classified, not graded yet
    GRADED = "graded"
    UNUSABLE = "unusable"  # the student's to fix (not a notebook, too large, a symbolic link): scored 0
    ERROR = "error"  # a grader bug: never a score
    DELETED = "deleted"
    NOT_RUN = "not_run"  # grading could not run, or the time budget was spent


class PullRequestStatus(StrEnum):
    """The pull request as a whole."""

    GRADED = "graded"
    NOTHING_TO_GRADE = "nothing_to_grade"  # no change to a course notebook, or only deletions
    NOT_GRADED = "not_graded"  # grading could not run at all (exit 2)


@dataclass
class Submission:
    """A changed course notebook and what came of it."""

    path: str
    change: str  # "added", "modified", "deleted", "type changed"...
    assignment: str
    max_points: float  # the assignment's points in the registry: its maximum when it has no result
    outcome: Outcome = Outcome.PENDING
    message: str = ""
    result: NotebookResult | None = None

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)  # a known outcome, or ValueError

    @property
    def score(self) -> float:
        return self.result.score if self.result is not None else 0.0

    @property
    def max_score(self) -> float:
        return self.result.max_score if self.result is not None else float(self.max_points)

    @property
    def scored(self) -> bool:
        """Counts towards the total and the minimum score: what the pull request submitted."""
        return self.outcome in (Outcome.GRADED, Outcome.UNUSABLE)


@dataclass
class Ignored:
    """A change that is listed, never graded or run: another notebook (with the reason) or any other file."""

    path: str
    change: str
    reason: str = ""


@dataclass
class Report:
    base: str = ""
    head: str = ""
    merge_base: str = ""
    submissions: list[Submission] = field(default_factory=list)
    ignored_notebooks: list[Ignored] = field(default_factory=list)
    other_changes: list[Ignored] = field(default_factory=list)
    failure: str = ""  # why grading could not run at all (exit 2)
    min_score: float | None = None  # percent of each notebook's maximum

    @property
    def scored(self) -> list[Submission]:
        return [s for s in self.submissions if s.scored]

    @property
    def score(self) -> float:
        return round(sum(s.score for s in self.scored), 6)

    @property
    def max_score(self) -> float:
        return sum(s.max_score for s in self.scored)

    def below_min_score(self) -> list[Submission]:
        if self.min_score is None:
            return []
        return [s for s in self.scored if s.max_score > 0 and 100 * s.score / s.max_score < self.min_score - 1e-9]

    @property
    def exit_code(self) -> int:
        if self.failure:
            return EXIT_CANNOT_GRADE
        if any(s.outcome == Outcome.ERROR for s in self.submissions):
            return EXIT_INTERNAL
        if self.below_min_score():
            return EXIT_BELOW_MIN_SCORE
        return EXIT_OK

    @property
    def status(self) -> PullRequestStatus:
        if self.failure:
            return PullRequestStatus.NOT_GRADED
        if not self.scored:
            return PullRequestStatus.NOTHING_TO_GRADE
        return PullRequestStatus.GRADED


# ----------------------------------------------------------------------------------- Markdown
OUTCOME_CELLS = {
    Outcome.UNUSABLE: "⚠️ could not be graded",
    Outcome.ERROR: f"💥 {INTERNAL}",
    Outcome.DELETED: "🗑️ deleted, not graded",
    Outcome.NOT_RUN: "⏸️ not graded",
}


def _short(commit: str) -> str:
    return f"`{commit[:12]}`" if commit else "?"


def _outcome_cell(submission: Submission) -> str:
    if submission.outcome == Outcome.GRADED and submission.result is not None:
        statuses = {e.status for e in submission.result.exercises}
        partial = Status.PARTIAL if submission.score > 0 else Status.FAILED
        emoji = "✅" if statuses == {Status.PASSED} else STATUS_EMOJI.get(partial)
        return f"{emoji} graded" + ("" if submission.result.official else " (unofficial)")
    return OUTCOME_CELLS.get(submission.outcome, inline(submission.outcome))


def _score_cell(submission: Submission) -> str:
    return fraction(submission.score, submission.max_score) if submission.scored else "—"


def _listing(items: Sequence[Ignored], with_reason: bool) -> list[str]:
    lines = []
    for item in items[:LIST_LIMIT]:
        reason = f" — {inline(item.reason)}" if with_reason and item.reason else ""
        lines.append(f"- {inline(item.change)}: {inline(item.path)}{reason}")
    if len(items) > LIST_LIMIT:
        lines.append(f"- … and {len(items) - LIST_LIMIT} more")
    return lines


def _overview(report: Report) -> list[str]:
    lines = [COMMENT_MARKER, "## 🎓 Autograder: pull request", ""]
    if report.head:
        lines += [f"Graded the notebooks that {_short(report.head)} changes since {_short(report.merge_base)}, "
                  f"with the course's own grader and hidden tests; nothing else from the pull request was run.", ""]
    if report.failure:
        lines += ["> [!WARNING]", f"> **Grading could not run**: {inline(clip(report.failure, 500))}",
                  "> This is not your fault, and no score was recorded; the course staff can see the failed run.", ""]
    if not report.submissions and not report.failure:
        lines += ["No course notebook under `assignments/` changed: nothing to grade.", ""]
    if report.submissions:
        lines += ["| Notebook | Change | Result | Score |", "|---|---|---|---:|"]
        for s in report.submissions:
            lines.append(f"| {inline(s.path)} | {inline(s.change)} | {_outcome_cell(s)} | {_score_cell(s)} |")
        if report.scored:
            lines.append(f"| **Total** | | | **{fraction(report.score, report.max_score)}** |")
        lines.append("")
    if report.min_score is not None and report.scored:
        below = report.below_min_score()
        verdict = "❌ not reached by " + ", ".join(inline(s.path) for s in below) if below else "✅ reached"
        lines += [f"Minimum score: {report.min_score:g} % of each notebook — {verdict}.", ""]
    return lines


def _problems(report: Report) -> list[str]:
    lines = []
    problems = [s for s in report.submissions if s.outcome in (Outcome.UNUSABLE, Outcome.ERROR)]
    if problems:
        lines += ["### Could not be graded", ""]
        for s in problems:
            lines += [f"**{inline(s.path)}**", "", code_block(s.message), ""]
    if report.ignored_notebooks:
        lines += ["### Notebooks not graded", ""] + _listing(report.ignored_notebooks, True) + [""]
    if report.other_changes:
        lines += ["### Other changes (reported, not run)", "",
                  "The grader, its tests and the workflows come from the base branch; these changes are listed "
                  "for the reviewer and were not executed.", ""]
        lines += _listing(report.other_changes, False) + [""]
    return lines


def markdown(report: Report) -> str:
    """The job summary and pull-request comment; the first line is :data:`COMMENT_MARKER`."""
    # One section per graded notebook, as ``grade --format markdown`` renders it.
    details = [line for s in report.submissions if s.result is not None for line in (notebook_section(s.result), "")]
    full = "\n".join(_overview(report) + details + _problems(report))
    if _size(full) <= COMMENT_LIMIT:
        return full
    # Too long for a comment: keep the overview and say where the rest is.
    short = "\n".join(_overview(report) + ["The per-exercise details are too long for a comment: see the JSON "
                                           "report of the grading run.", ""] + _problems(report))
    limit = COMMENT_LIMIT
    while _size(short) > COMMENT_LIMIT:  # clip counts characters; a character is up to 4 bytes
        limit //= 2
        short = clip(short, limit)
    return short


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------- JSON
def _listed(items: Sequence[Ignored]) -> list[dict[str, str]]:
    return [{"path": visible(i.path), "change": i.change, "reason": visible(i.reason)} for i in items[:JSON_LIST_LIMIT]]


def as_json(report: Report) -> dict[str, Any]:
    """The report as data (schema :data:`SCHEMA`), each notebook's full result as ``grade --format json`` has it."""
    return {
        "schema": SCHEMA,
        "status": report.status.value,
        "exit_code": report.exit_code,
        "failure": visible(report.failure),
        "base": report.base,
        "head": report.head,
        "merge_base": report.merge_base,
        "score": report.score,
        "max_score": report.max_score,
        "min_score_percent": report.min_score,
        "below_min_score": [visible(s.path) for s in report.below_min_score()],
        "notebooks": [
            {
                "path": visible(s.path),
                "assignment": s.assignment,
                "change": s.change,
                "outcome": s.outcome.value,
                "message": visible(s.message),
                "score": s.score if s.scored else None,
                "max_score": s.max_score,
                "result": as_data(s.result) if s.result is not None else None,
            }
            for s in report.submissions
        ],
        "ignored_notebooks": _listed(report.ignored_notebooks),
        "other_changes": _listed(report.other_changes),
        "other_changes_total": len(report.other_changes),
    }
