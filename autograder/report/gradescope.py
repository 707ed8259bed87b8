"""Gradescope autograder ``results.json``.

One Gradescope test per hidden test (named ``exercise: test``), or one per exercise when the
exercise has no test results (not attempted, forbidden, crashed before testing). Several notebooks
are merged into one submission, their test names prefixed with the notebook.
"""

from __future__ import annotations

import json
from typing import Any

from autograder.report.common import UNOFFICIAL, Results, as_list, clip, fraction, one_line, visible
from autograder.report.results import ExerciseResult

MESSAGE_LIMIT = 4000
VISIBILITY = "visible"  # students see their feedback as soon as it is graded
STDOUT_VISIBILITY = "hidden"  # the autograder's own log is for instructors


def _tests(exercise: ExerciseResult, prefix: str) -> list[dict[str, Any]]:
    name = f"{prefix}{one_line(exercise.name)}"
    if not exercise.tests:
        return [
            {
                "name": name,
                "score": exercise.score,
                "max_score": exercise.max_score,
                "status": "passed" if exercise.status == "passed" else "failed",
                "output": clip(visible(exercise.message or exercise.status), MESSAGE_LIMIT),
                "visibility": VISIBILITY,
            }
        ]
    out = []
    for test in exercise.tests:
        # A failed test without its own message (timeout, forbidden call) shows the exercise's.
        message = test.message or ("" if test.passed else exercise.message)
        out.append(
            {
                "name": f"{name}: {one_line(test.name)}",
                "score": test.points,
                "max_score": test.max_points,
                "status": "passed" if test.passed else "failed",
                "output": clip(visible(message), MESSAGE_LIMIT),
                "visibility": VISIBILITY,
            }
        )
    return out


def as_data(results: Results) -> dict[str, Any]:
    items = as_list(results)
    tests: list[dict[str, Any]] = []
    output: list[str] = []
    for result in items:
        prefix = f"{one_line(result.notebook)}: " if len(items) > 1 else ""
        output.append(f"{one_line(result.notebook)}: {fraction(result.score, result.max_score)}")
        if not result.official:
            output.append(UNOFFICIAL)
        if result.provenance():
            output.append(f"graded with {one_line(result.provenance())}")
        output += [f"note: {one_line(notice)}" for notice in result.notices]
        output += [f"problem with the notebook: {one_line(error)}" for error in result.errors]
        output += [f"  {one_line(e.name)}: {one_line(e.status)} ({fraction(e.score, e.max_score)})" for e in result.exercises]
        for exercise in result.exercises:
            tests += _tests(exercise, prefix)
    return {
        "score": round(sum(r.score for r in items), 6),
        "output": "\n".join(output),
        "tests": tests,
        "visibility": VISIBILITY,
        "stdout_visibility": STDOUT_VISIBILITY,
    }


def render(results: Results) -> str:
    return json.dumps(as_data(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
