"""The feedback under an nbgrader autograder-test cell: one exercise's verdicts, never its tests.

``nbgrader autograde`` (``autograder/frontends/nbgrader_plugin.py``) makes it the cell's output, so
the student reads it in the feedback nbgrader generates. Plain text: every message is escaped
(no terminal or control characters) and clipped.
"""

from __future__ import annotations

from typing import Iterable

from autograder.report.common import clip, points, visible
from autograder.report.results import ExerciseResult, Status

MESSAGE_LIMIT = 2000  # characters of one message in a cell's output
FOOTER = "(Graded by the course autograder in its sandbox; the hidden tests are not shown.)"


def _block(text: str, indent: str) -> list[str]:
    """Student-influenced text as indented lines: escaped (no terminal or control characters), clipped."""
    body = clip(visible(text).rstrip(), MESSAGE_LIMIT)
    return [indent + row for row in body.split("\n")]


def feedback_text(exercise: ExerciseResult, errors: Iterable[str] = ()) -> str:
    """What the student reads under the autograder-test cell of ``exercise``: the engine's verdicts.

    ``errors`` are the notebook-level problems (``NotebookResult.errors``), shown under an exercise
    that did not pass.
    """
    lines = [f"{visible(exercise.name)}: {points(exercise.score)} / {points(exercise.max_score)} points "
             f"({visible(exercise.status).replace('_', ' ')})"]
    if exercise.message:
        lines += _block(exercise.message, "  ")
    # Not attempted: every test fails for the one reason already given; listing them adds nothing.
    tests = [] if exercise.status == Status.NOT_ATTEMPTED else exercise.tests
    for test in tests:
        mark = "PASS" if test.passed else "FAIL"
        test_name = visible(test.name).removeprefix("test_")
        lines.append(f"  {mark}  {test_name} ({points(test.points)} / {points(test.max_points)})")
        if not test.passed and test.message:
            lines += _block(test.message, "        ")
    errors = list(errors)
    if errors and exercise.status != Status.PASSED:
        lines.append("Problems with the notebook:")
        for error in errors:
            rows = _block(error, "    ")
            lines += ["  - " + rows[0].lstrip(), *rows[1:]]
    lines.append(FOOTER)
    return "\n".join(lines) + "\n"
