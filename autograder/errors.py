"""Errors the grader reports to its user as one line, not as a traceback.

Anything else that escapes the engine is a grader bug: the command line reports it as an internal
error that is not the student's fault (see ``autograder/frontends/cli.py`` for the exit statuses).
"""

from __future__ import annotations

#: How every report tells the student that the grader, not their code, failed.
INTERNAL = "internal grader error (not your fault)"
#: The same, addressed to the person running the grader.
INTERNAL_FOR_STAFF = "internal grader error (not the student's fault)"


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
