"""The feedback under an nbgrader autograder-test cell, from hand-built results.

``tests/frontends/test_nbgrader_integration.py`` checks that ``nbgrader autograde`` puts it in the
cells and that the generated feedback shows it.
"""

from __future__ import annotations

from autograder.report.cell_feedback import MESSAGE_LIMIT, feedback_text
from autograder.report.results import ExerciseResult
from autograder.report.results import TestResult as Outcome  # aliased: pytest would collect a Test* name


def test_feedback_text_shows_verdicts_and_messages_safely() -> None:
    errors = ["cell 9: RuntimeError: \x1b[31mboom"]
    tests = [Outcome("test_values", True, 7, 7, ""),
             Outcome("test_stability", False, 0, 3, "Tensor-likes are not close!\nGreatest absolute difference: nan")]
    text = feedback_text(ExerciseResult("softmax", 7, 10, "partial", tests), errors)
    assert text.startswith("softmax: 7 / 10 points (partial)\n")
    assert "PASS  values (7 / 7)" in text and "FAIL  stability (0 / 3)" in text
    assert "Greatest absolute difference: nan" in text
    assert "\x1b" not in text and "\\x1b[31mboom" in text  # student text cannot drive a terminal
    not_attempted = feedback_text(ExerciseResult("softmax", 0, 10, "not_attempted", tests, message="not implemented yet"))
    assert not_attempted.split("\n")[:2] == ["softmax: 0 / 10 points (not attempted)", "  not implemented yet"]
    assert "FAIL" not in not_attempted
    timeout = feedback_text(ExerciseResult("cross_entropy", 0, 10, "timeout", [],
                                           message="`cross_entropy` did not finish within 20 s"))
    assert "cross_entropy: 0 / 10 points (timeout)" in timeout and "did not finish within 20 s" in timeout


def test_feedback_text_layout() -> None:
    exercise = ExerciseResult("softmax", 7, 10, "partial", [Outcome("test_values", True, 7, 7, ""),
                                                            Outcome("test_stability", False, 0, 3, "not close\nnan")])
    assert feedback_text(exercise, ["cell 9: boom\nsecond line"]) == (
        "softmax: 7 / 10 points (partial)\n"
        "  PASS  values (7 / 7)\n"
        "  FAIL  stability (0 / 3)\n"
        "        not close\n"
        "        nan\n"
        "Problems with the notebook:\n"
        "  - cell 9: boom\n"
        "    second line\n"
        "(Graded by the course autograder in its sandbox; the hidden tests are not shown.)\n")
    # The notebook's problems are shown only under an exercise that did not pass.
    passed = ExerciseResult("softmax", 10, 10, "passed", [Outcome("test_values", True, 10, 10)])
    assert feedback_text(passed, ["cell 9"]) == (
        "softmax: 10 / 10 points (passed)\n"
        "  PASS  values (10 / 10)\n"
        "(Graded by the course autograder in its sandbox; the hidden tests are not shown.)\n")


def test_long_messages_are_clipped() -> None:
    exercise = ExerciseResult("softmax", 0, 10, "failed", [Outcome("test_values", False, 0, 10, "x" * 5000)])
    [line] = [row for row in feedback_text(exercise).split("\n") if row.strip().startswith("x")]
    assert line.strip().startswith("x" * MESSAGE_LIMIT + "… (") and len(line) < MESSAGE_LIMIT + 50
