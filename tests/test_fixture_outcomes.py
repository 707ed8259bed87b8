"""Every known implementation in tests/fixtures/implementations/ gets, through the real sandbox,
the outcome it deserves: ``correct_*`` full marks, ``bug_*`` fails the tests its
``EXPECTED_FAILURES`` names with a message containing the named cause (the hint is checked by
feeding the mistake), ``cheat_*`` (a forbidden routine) the status ``forbidden`` and 0 points.

To keep the number of gradings small, one notebook carries one implementation of each exercise of
its assignment (implementations are paired up slot by slot; a short list is padded with a correct
one). Parametrized over ``ASSIGNMENTS``; add an assignment once its fixtures follow this format.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
from pathlib import Path

import pytest

from autograder.course import registry
from autograder.grading.engine import grade_notebook
from autograder.sandbox import bubblewrap as sandbox

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ROOT / "tests" / "fixtures" / "implementations"
#: Assignments whose every exercise has fixtures with ``correct_``, ``bug_`` and ``cheat_`` functions.
ASSIGNMENTS = ("14_transformer", "15_planning")
#: Any grading seed must give the same outcomes (the suites are built so); one is fixed for the record.
SEED = 20261204

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason=f"sandbox: {sandbox.unavailable_reason()}"),
]


def _functions(exercise: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """name -> source renamed to the exercise's name, for every correct_/bug_/cheat_ function; and
    the module's EXPECTED_FAILURES."""
    path = IMPLEMENTATIONS / f"{exercise}.py"
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith(("correct_", "bug_", "cheat_")):
            text = "".join(lines[node.lineno - 1:node.end_lineno])
            out[node.name] = text.replace(f"def {node.name}(", f"def {exercise}(", 1)
    spec = importlib.util.spec_from_file_location(f"_outcomes_{exercise}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return out, dict(getattr(module, "EXPECTED_FAILURES", {}))


def _slots(assignment: str) -> list[dict[str, str]]:
    """One {exercise: implementation name} per notebook, covering every implementation once."""
    exercises = [e.name for e in registry.assignments()[assignment]]
    names = {e: sorted(_functions(e)[0], key=lambda n: (not n.startswith("correct_"), n)) for e in exercises}
    first_correct = {e: next(n for n in names[e] if n.startswith("correct_")) for e in exercises}
    rows = itertools.zip_longest(*(names[e] for e in exercises))
    return [{e: (n or first_correct[e]) for e, n in zip(exercises, row)} for row in rows]


def _notebook(assignment: str, answers: dict[str, str], directory: Path) -> Path:
    exercises = registry.assignments()[assignment]
    nb = json.loads((ROOT / "assignments" / assignment / exercises[0].notebook).read_text(encoding="utf-8"))
    for exercise in exercises:
        source = _functions(exercise.name)[0][answers[exercise.name]]
        (cell,) = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == exercise.name]
        cell["source"], cell["outputs"] = source, []
    path = directory / exercises[0].notebook
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


CASES = [pytest.param(a, answers, id=f"{a}-" + "+".join(answers.values())) for a in ASSIGNMENTS for answers in _slots(a)]


@pytest.mark.parametrize("assignment, answers", CASES)
def test_known_implementation_gets_the_outcome_it_deserves(assignment, answers, tmp_path):
    result = grade_notebook(_notebook(assignment, answers, tmp_path), seed=SEED)
    by_name = {e.name: e for e in result.exercises}
    for exercise, name in answers.items():
        graded = by_name[exercise]
        failed = {t.name: t.message for t in graded.tests if not t.passed}
        what = f"{exercise} as {name}: {graded.status} {graded.score}/{graded.max_score} {failed}"
        if name.startswith("correct_"):
            assert graded.status == "passed" and graded.score == graded.max_score, what
        elif name.startswith("cheat_"):
            assert graded.status == "forbidden" and graded.score == 0, what
        else:
            expected = _functions(exercise)[1].get(name)
            assert expected, f"{exercise}: {name} has no EXPECTED_FAILURES entry"
            assert graded.score < graded.max_score, what
            for test, word in expected.items():
                assert test in failed, f"{what}: {test} should fail"
                assert word.lower() in failed[test].lower(), f"{what}: the message of {test} should say {word!r}"
