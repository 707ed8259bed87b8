"""Seed-robust suites, one slip one test: every implementation in ``tests/fixtures/implementations``
is graded by the hidden suites under 20 seeds.

- every ``correct_*`` implementation passes every test on every seed;
- every ``bug_*`` implementation fails exactly the tests its module's ``EXPECTED_FAILURES`` names,
  with the named word in each message, and the same set on every seed: a mistake fails by a wide
  margin or not at all, and loses only the test(s) that name it.

Fast on purpose: one warm (sandboxed where possible) worker holds every implementation, one pytest
session holds every suite (``SuiteServer``); each implementation is bound to the exercise's name in
turn (``StudentSession.rebind``).
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType

import pytest

from autograder.course import registry
from autograder.grading import engine
from autograder.grading.suite_server import SuiteServer
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.session import Cell, StudentSession

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "implementations"
SEEDS = [7919 * i + 104729 for i in range(20)]
#: The first eight exercises (assignments 01-07); later ones are checked against their fixtures by
#: tests/test_suites_against_fixtures.py and tests/test_fixture_outcomes.py.
FIRST_EIGHT = ("softmax", "cross_entropy", "dropout", "corr2d", "clip_grad", "adam_step", "self_attention",
               "q_learning_update")
EXERCISES = [registry.BY_NAME[name] for name in FIRST_EIGHT]
SETUP = "import math\nimport numpy as np\nimport torch\n"

pytestmark = pytest.mark.slow


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def implementations(name: str) -> list[tuple[str, str]]:
    """(function name, source renamed to ``<exercise>__<function>``) of every correct_/bug_ function."""
    module = _module(name)
    out = []
    for attr, value in vars(module).items():
        if inspect.isfunction(value) and attr.startswith(("correct_", "bug_")):
            source = inspect.getsource(value).replace(f"def {attr}(", f"def {name}__{attr}(", 1)
            out.append((attr, source))
    return out


@pytest.fixture(scope="module")
def grader():
    sources = [SETUP] + [src for e in EXERCISES for _, src in implementations(e.name)]
    sandboxed = sandbox.unavailable_reason() is None
    lease = sandbox.lease_slot() if sandboxed else None
    session = StudentSession([Cell("\n\n".join(sources), "cell [1]")], sandboxed=sandboxed,
                             slot=lease.slot if lease else 0,
                             forbidden={e.name: engine._worker_spec(e) for e in EXERCISES},
                             sentinels=sorted({s for e in EXERCISES for s in engine._sentinels(e)}),
                             call_timeout=max(e.timeout_s for e in EXERCISES))
    server = SuiteServer()
    session.start()
    assert not session.load_problems, session.load_problems
    yield session, server
    session.close()
    server.close()
    if lease:
        lease.release()


def _failing(session: StudentSession, server: SuiteServer, exercise: registry.Exercise, seed: int) -> dict[str, str]:
    session.reset_budgets()  # each implementation and seed is a submission of its own
    collector = engine._Collector(session, seed, "cpu", ["meta"])
    server([exercise], collector)
    return {test: collector.outcomes[(exercise.name, test)].message if (exercise.name, test) in collector.outcomes
            else "did not run" for test in exercise.tests
            if not collector.outcomes.get((exercise.name, test), engine.Outcome(False)).passed}


#: Open defects this test has found and that are not fixed yet (an expected failure, with the reason).
OPEN_DEFECTS = {
    "dropout": ("open defect: test_drop_rate failed a dropout whose mechanism is correct (bug_no_validation) "
                "on 1 seed of 20 (seed 215595): the drop-rate check is not yet as seed-robust as its "
                "stated Hoeffding bound promises"),
}


@pytest.mark.parametrize("exercise", [
    pytest.param(e, marks=pytest.mark.xfail(reason=OPEN_DEFECTS[e.name], strict=False)) if e.name in OPEN_DEFECTS
    else e for e in EXERCISES], ids=lambda e: e.name)
def test_every_implementation_gets_the_same_verdict_on_every_seed(grader, exercise: registry.Exercise):
    session, server = grader
    expected_failures = _module(exercise.name).EXPECTED_FAILURES
    exact = getattr(_module(exercise.name), "EXACT_FAILURES", set())
    problems = []
    for function, _ in implementations(exercise.name):
        session.rebind(exercise.name, f"{exercise.name} = {exercise.name}__{function}")
        expected = expected_failures.get(function, {}) if function.startswith("bug_") else {}
        verdicts: dict[frozenset[str], list[int]] = {}
        for seed in SEEDS:
            failing = _failing(session, server, exercise, seed)
            verdicts.setdefault(frozenset(failing), []).append(seed)
            if len(verdicts) > 1 and function not in getattr(_module(exercise.name), "SEED_DEPENDENT", set()):
                break
            wrong = {t: m[:300] for t, m in failing.items() if t in expected and expected[t].lower() not in m.lower()}
            if wrong:
                problems.append(f"{function}, seed {seed}: messages without the expected words: {wrong}")
                break
            if function.startswith("correct_") and failing:
                problems.append(f"{function}, seed {seed}: a correct implementation fails "
                                + "; ".join(f"{t}: {m[:200]}" for t, m in failing.items()))
                break
            if not set(expected) <= set(failing):
                problems.append(f"{function}, seed {seed}: fails {sorted(failing)}, not all of {sorted(expected)}")
                break
            if function in exact and set(failing) != set(expected):
                problems.append(f"{function}, seed {seed}: one slip, one test: fails {sorted(failing)}, "
                                f"exactly {sorted(expected)} expected")
                break
        if len(verdicts) > 1 and function not in getattr(_module(exercise.name), "SEED_DEPENDENT", set()):
            problems.append(f"{function}: the verdict depends on the seed: "
                            + "; ".join(f"seeds {seeds[:3]} fail {sorted(tests)}" for tests, seeds in verdicts.items()))
    assert not problems, "\n".join(problems)
