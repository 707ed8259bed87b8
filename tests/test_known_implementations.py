"""The hidden suites against the known implementations of tests/fixtures/implementations/.

For each exercise listed in ``COVERED``, every function of its fixture module runs as student code
in a real worker and the exercise's real hidden suite grades it, as the engine does:

* ``correct_*`` must score full marks (valid alternatives are never penalised) and make no
  forbidden call (tests/test_forbidden.py scans them);
* ``bug_*`` must fail at least the tests its ``EXPECTED_FAILURES`` entry names, each with a
  message containing the named word (the hint names the cause);
* ``cheat_*`` must be caught by the worker's recorders, naming ``EXPECTED_FORBIDDEN``'s routine;
* the untouched stub (``raise NotImplementedError()``) passes no test.
"""

from __future__ import annotations

import importlib.util
import inspect
import secrets
import textwrap
from pathlib import Path

import pytest

from autograder.course import registry
from autograder.grading import engine
from autograder.sandbox.session import Cell, StudentSession

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "implementations"
#: The exercises whose fixture modules this file runs (each costs a worker start per function).
COVERED = ("conv2d", "pool2d", "batch_norm", "gru_cell", "lstm_cell", "replace_classifier")
PRELUDE = "import math\n\nimport numpy as np\nimport torch\n"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"_known_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _functions(prefix: str) -> list[tuple[str, str]]:
    out = []
    for name in COVERED:
        if not (FIXTURES / f"{name}.py").is_file():
            continue
        module = _module(name)
        out += [(name, f) for f, obj in vars(module).items() if f.startswith(prefix) and inspect.isfunction(obj)]
    return out


def _ids(pairs) -> list[str]:
    return [f"{exercise}-{function}" for exercise, function in pairs]


def _student_source(exercise: str, function: str) -> str:
    source = textwrap.dedent(inspect.getsource(getattr(_module(exercise), function)))
    return PRELUDE + source.replace(f"def {function}(", f"def {exercise}(", 1)


class _LeasedSession(StudentSession):
    """A sandboxed session on a slot (and so a uid) that no other grading uses meanwhile."""

    def __init__(self, exercise: registry.Exercise, source: str) -> None:
        self.lease = engine.lease_slot()
        super().__init__([Cell(source, "cell [1]")], device="cpu", slot=self.lease.slot,
                         forbidden={exercise.name: engine._worker_spec(exercise)},
                         sentinels=engine._sentinels(exercise), call_timeout=exercise.timeout_s)

    def close(self) -> None:
        super().close()
        self.lease.release()


def _session(exercise: registry.Exercise, source: str) -> StudentSession:
    return _LeasedSession(exercise, source)


def _run(exercise: registry.Exercise, session: StudentSession) -> dict[str, engine.Outcome]:
    collector = engine._Collector(session, secrets.randbits(62), "cpu", ["meta"])
    engine._run_suites([exercise], collector)
    return {test: outcome for (name, test), outcome in collector.outcomes.items() if name == exercise.name}


def _grade(exercise_name: str, source: str) -> tuple[dict[str, engine.Outcome], list[str]]:
    """Run ``source`` in a fresh worker and the exercise's hidden suite on it: outcomes per test and
    the forbidden routines the worker's recorders saw."""
    exercise = registry.BY_NAME[exercise_name]
    with _session(exercise, source) as session:
        outcomes = _run(exercise, session)
    return outcomes, engine._runtime_findings(exercise, session.forbidden.get(exercise.name, []))


@pytest.fixture(scope="module")
def warm():
    """One worker per exercise holding every function of its fixture module; a test binds the
    exercise's name to one of them (a cell appended to the session, so a restart replays it).
    Saves a worker start per function; cheats get fresh workers (their recorder hits would stay)."""
    sessions: dict[str, StudentSession] = {}

    def grade(exercise_name: str, function: str) -> dict[str, engine.Outcome]:
        exercise = registry.BY_NAME[exercise_name]
        if exercise_name not in sessions:
            sessions[exercise_name] = _session(exercise, PRELUDE + (FIXTURES / f"{exercise_name}.py").read_text())
        session = sessions[exercise_name]
        session.cells.append(Cell(f"{exercise_name} = {function}", f"cell [{len(session.cells) + 1}]"))
        if session.worker is not None and not session.worker.dead:
            reply, _ = session.worker.request({"op": "exec", "source": session.cells[-1].source,
                                               "filename": f"<{session.cells[-1].label}>"}, None, 30)
            assert reply.get("ok"), reply
        session.strikes.clear()
        return _run(exercise, session)

    yield grade
    for session in sessions.values():
        session.close()


def _failures(outcomes) -> dict[str, str]:
    return {test: outcome.message for test, outcome in outcomes.items() if not outcome.passed}


@pytest.mark.slow
@pytest.mark.parametrize("exercise,function", _functions("correct_"), ids=_ids(_functions("correct_")))
def test_correct_implementations_score_full_marks(warm, exercise, function):
    outcomes = warm(exercise, function)
    assert set(outcomes) == set(registry.BY_NAME[exercise].tests), f"tests that did not run: {outcomes.keys()}"
    assert not _failures(outcomes), _failures(outcomes)


@pytest.mark.slow
@pytest.mark.parametrize("exercise,function", _functions("bug_"), ids=_ids(_functions("bug_")))
def test_typical_mistakes_fail_with_a_hint_naming_the_cause(warm, exercise, function):
    expected = _module(exercise).EXPECTED_FAILURES[function]
    outcomes = warm(exercise, function)
    failures = _failures(outcomes)
    for test, word in expected.items():
        assert test in failures, f"{function} passed {test}; failures: {failures}"
        assert word.lower() in failures[test].lower(), f"{test}: {failures[test]!r} does not say {word!r}"


@pytest.mark.slow
@pytest.mark.parametrize("exercise,function", _functions("cheat_"), ids=_ids(_functions("cheat_")))
def test_cheats_are_caught(exercise, function):
    routine = _module(exercise).EXPECTED_FORBIDDEN[function]
    _, hits = _grade(exercise, _student_source(exercise, function))
    assert any(routine in hit for hit in hits), hits


@pytest.mark.slow
@pytest.mark.parametrize("exercise", COVERED)
def test_the_stub_passes_no_test(exercise):
    signature = registry.BY_NAME[exercise].signature
    outcomes, _ = _grade(exercise, PRELUDE + f"def {exercise}({signature}):\n    raise NotImplementedError()\n")
    assert outcomes and not any(o.passed for o in outcomes.values()), [t for t, o in outcomes.items() if o.passed]


def test_every_bug_and_cheat_says_what_it_must_fail():
    for name in COVERED:
        module = _module(name)
        bugs = {f for f in vars(module) if f.startswith("bug_")}
        cheats = {f for f in vars(module) if f.startswith("cheat_")}
        assert bugs == set(module.EXPECTED_FAILURES), f"{name}: {bugs ^ set(module.EXPECTED_FAILURES)}"
        assert cheats == set(getattr(module, "EXPECTED_FORBIDDEN", {})), name
        tests = set(registry.BY_NAME[name].tests)
        for bug, expected in module.EXPECTED_FAILURES.items():
            assert set(expected) <= tests, f"{name}.{bug} names tests the suite does not have: {set(expected) - tests}"
