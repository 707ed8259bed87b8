"""Errors the grader reports to its user as one line, not as a traceback.

Anything else that escapes the engine is a grader bug: the command line reports it as an internal
error that is not the student's fault (exit statuses: ``EXIT_*`` below).
"""

from __future__ import annotations

from enum import StrEnum

#: The exit statuses of every command (``grade``, ``grade-batch``, ``ci``, ``check``): 0 graded (a
#: low score included); 1 a grader error, nothing scored (not the student's fault; run again);
#: 2 nothing could be graded (unusable input, no sandbox, bad arguments); 3 (``ci --min-score``)
#: graded, but a notebook is below the minimum score.
EXIT_OK, EXIT_INTERNAL, EXIT_CANNOT_GRADE, EXIT_BELOW_MIN_SCORE = 0, 1, 2, 3
EXIT_UNUSABLE = EXIT_CANNOT_GRADE

#: How every report tells the student that the grader, not their code, failed.
INTERNAL = "internal grader error (not your fault)"
#: The same, addressed to the person running the grader.
INTERNAL_FOR_STAFF = "internal grader error (not the student's fault)"
#: The head of the one line that reports a :class:`GraderError` (see :meth:`GraderError.line`).
GRADER_ERROR = "grader error (not your fault)"


class OutcomeKind(StrEnum):
    """How a hidden test ended, when it did not simply pass: the kinds of the student's code's
    failures (a ``StudentError`` of the sandbox session: the first six), a hidden check that failed,
    a test the grader skipped, and the grader's own failures (never scored)."""

    NONE = ""  # passed: a test that did not pass always has a kind
    EXCEPTION = "exception"
    NOT_IMPLEMENTED = "not_implemented"
    MISSING = "missing"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    PROTOCOL = "protocol"
    FAILURE = "failure"  # an assertion of the hidden suite: the verdict on a wrong result
    SKIPPED = "skipped"
    INTERNAL = "internal"  # the hidden suite itself raised (or a test did not run)
    GRADER = "grader"  # a GraderError: the grader could not judge

    @property
    def not_attempted(self) -> bool:
        """The function is still the stub, or is not defined at all."""
        return self in (OutcomeKind.NOT_IMPLEMENTED, OutcomeKind.MISSING)

    @property
    def grader_failed(self) -> bool:
        """The grader, not the student's code, failed: no verdict."""
        return self in (OutcomeKind.GRADER, OutcomeKind.INTERNAL)


class AutogradeError(Exception):
    """Base of the errors whose message is meant for the person running the grader."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnusableInput(AutogradeError):
    """The submission cannot be graded at all: not a file, unreadable, not JSON, not a notebook."""


class SandboxUnavailable(AutogradeError):
    """Official grading needs the sandbox and it cannot be started here; grading fails closed."""


class GraderError(AutogradeError):
    """The grader, not the submission, failed: a worker that could not start (the machine's
    resources), a missing or damaged hidden suite or reference, a hidden test that could not run.

    Never a score: the grading is reported as an error that is not the student's fault (exit 1,
    status ``error``, nothing recorded as a grade), after the retries that could help."""

    def line(self) -> str:
        """The one line that reports it, headed by :data:`GRADER_ERROR` (once)."""
        return self.message if self.message.startswith(GRADER_ERROR) else f"{GRADER_ERROR}: {self.message}"
