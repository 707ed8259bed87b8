"""What an instructor must look at: the statuses that are not an ordinary score.

One vocabulary for every front end that records grades (``nbgrader autograde``, ``grade-batch
--gradebook``, the export and the class report):

- ``unusable``: the submission could not be read as a notebook of the course (not JSON, a renamed
  notebook, a link...); no score, never a real 0;
- ``grader error``: the grader failed (not the student's fault); no score, graded again next time;
- ``forbidden``: an exercise calls a routine the exercise forbids (scored 0, to confirm);
- ``for review``: tampering noted outside the graded functions (costs nothing, to look at);
- ``timed out``: an exercise ran past its time budget (scored 0, to confirm).

In the gradebook a flag is the comment of the exercise's solution cell (``[autograder] forbidden:
...``, shown in formgrader), its test cell marked as needing manual grading, and the submitted
notebook flagged. The export reads the flags back from those comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from autograder.report.results import NotebookResult

COMMENT_PREFIX = "[autograder] "
UNUSABLE, GRADER_ERROR, FORBIDDEN, FOR_REVIEW, TIMED_OUT = "unusable", "grader error", "forbidden", "for review", "timed out"
KINDS = (UNUSABLE, GRADER_ERROR, FORBIDDEN, FOR_REVIEW, TIMED_OUT)
#: Exercise statuses of the engine that are flags.
BY_STATUS = {"forbidden": FORBIDDEN, "timeout": TIMED_OUT, "error": GRADER_ERROR}
#: Notebook-level flags: nothing of the notebook was scored.
UNSCORED = (UNUSABLE, GRADER_ERROR)
REVIEW_NOTE = "for review:"


@dataclass(frozen=True)
class Flag:
    kind: str
    exercise: str | None  # None: the whole notebook
    reason: str

    def comment(self) -> str:
        where = f" ({self.exercise})" if self.exercise else ""
        return f"{COMMENT_PREFIX}{self.kind}{where}: {self.reason}"


def from_result(result: NotebookResult) -> list[Flag]:
    """The flags of a graded notebook."""
    flags = []
    for exercise in result.exercises:
        kind = BY_STATUS.get(exercise.status)
        if kind:
            reason = exercise.message or next((t.message for t in exercise.tests if not t.passed), "")
            flags.append(Flag(kind, exercise.name, reason or kind))
    for note in result.errors:
        if str(note).startswith(REVIEW_NOTE):
            flags.append(Flag(FOR_REVIEW, None, str(note)[len(REVIEW_NOTE):].strip()))
    return flags


def for_failure(status: str, message: str) -> list[Flag]:
    """The flag of a submission that could not be graded (``unusable`` or ``error``)."""
    return [Flag(UNUSABLE if status == "unusable" else GRADER_ERROR, None, message or status)]


def parse(comment: str | None) -> list[tuple[str, str | None]]:
    """(kind, exercise) of every flag line of a gradebook comment written by :meth:`Flag.comment`."""
    out = []
    for line in (comment or "").split("\n"):
        if not line.startswith(COMMENT_PREFIX):
            continue
        head = line[len(COMMENT_PREFIX):].split(":", 1)[0]
        kind, _, exercise = head.partition(" (")
        if kind in KINDS:
            out.append((kind, exercise.rstrip(")") or None))
    return out


def summary(pairs: Iterable[tuple[str, str | None]]) -> str:
    """``forbidden: softmax; timed out: cross_entropy; unusable`` in the order of :data:`KINDS`."""
    grouped: dict[str, list[str]] = {}
    for kind, exercise in pairs:
        names = grouped.setdefault(kind, [])
        if exercise and exercise not in names:
            names.append(exercise)
    parts = []
    for kind in KINDS:
        if kind in grouped:
            parts.append(f"{kind}: {', '.join(grouped[kind])}" if grouped[kind] else kind)
    return "; ".join(parts)
