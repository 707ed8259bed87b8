"""Points need the exercise: every trivial non-implementation in ``tests/fixtures/non_implementations.py``
earns nothing beyond what the untouched stub earns (0), graded in the real sandbox (one warm slot).

Table-driven: to cover a new exercise, add its row to ``NON_IMPLEMENTATIONS``."""

from __future__ import annotations

import json

import pytest

from autograder.course import registry
from autograder.sandbox import bubblewrap as sandbox
from bench import submissions as make
from tests.fixtures.non_implementations import NON_IMPLEMENTATIONS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason=f"sandbox: {sandbox.unavailable_reason()}"),
]

SLOT = 38  # apart from the corpus (40-59, 64-99), test_batch (60-63) and slot 0

CASES = [(exercise, name) for exercise, table in NON_IMPLEMENTATIONS.items() for name in table]


def test_every_exercise_has_non_implementations() -> None:
    declared = {e.name for exercises in registry.assignments().values() for e in exercises}
    assert set(NON_IMPLEMENTATIONS) == declared


@pytest.fixture(scope="module")
def grader():
    from autograder.frontends.batch.grader import SlotGrader

    graded = SlotGrader(SLOT)
    yield graded
    graded.close()


@pytest.mark.parametrize("exercise, name", CASES, ids=[f"{e}-{n}" for e, n in CASES])
def test_a_non_implementation_earns_nothing(grader, exercise: str, name: str) -> None:
    declared = registry.BY_NAME[exercise]
    assignment = next(a for a, es in registry.assignments().items() if declared in es)
    nb = make.notebook_with(assignment, {})  # every exercise a stub...
    (cell,) = [c for c in nb["cells"] if c.get("cell_type") == "code" and make._grade_id(c) == exercise]
    cell["source"] = NON_IMPLEMENTATIONS[exercise][name]  # ...but this one
    out = grader.grade({"key": f"{exercise}-{name}", "name": declared.notebook, "data": json.dumps(nb).encode(),
                        "assignment": assignment, "seed": 12345, "device": "cpu"})
    assert out.status == "graded" and out.result is not None, out
    (result,) = [e for e in out.result.exercises if e.name == exercise]
    passed = [t.name for t in result.tests if t.passed]
    assert result.score == 0 and not passed, f"{exercise} {name!r} earned {result.score}: {passed}"
