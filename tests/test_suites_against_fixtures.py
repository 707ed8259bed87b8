"""The hidden suites against the known implementations of ``tests/fixtures/implementations``.

For each exercise listed here, one sandboxed worker loads the fixture module (every ``correct_``,
``bug_`` and ``cheat_`` function under its own name), and the exercise's hidden suite runs once per
function through the engine's own pytest plugin, the session's calls addressed to that function:

- every ``correct_`` function passes every test;
- every ``bug_`` function fails each test its ``EXPECTED_FAILURES`` entry names, with a message that
  contains the given words (the named mistake or the hint), and never earns full marks;
- every ``cheat_`` function is caught calling the routine ``EXPECTED_FORBIDDEN`` names, by the
  static scan of its source and by the worker's recorders.
"""

from __future__ import annotations

import ast
import importlib.util
import secrets
from pathlib import Path

import pytest

from autograder.course import registry
from autograder.grading import engine
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.session import Cell, StudentSession
from autograder.submission.static_scan import scan

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "implementations"
#: The exercises whose suites are checked here against their fixtures.
EXERCISES = ("gru_cell", "lstm_cell", "replace_classifier", "bce_with_logits", "sgd_momentum_step", "adagrad_step",
             "rmsprop_step")
PRELUDE = "import math\nimport numpy as np\nimport torch\nfrom torch import nn\n"


class _As:
    """The session with every call addressed to one fixture function instead of the exercise's name."""

    def __init__(self, session: StudentSession, function: str) -> None:
        self._session = session
        self._function = function

    @property
    def device(self) -> str:
        return self._session.device

    def vjp(self, function, args, **kwargs):
        return self._session.vjp(self._function, args, **kwargs)

    def run(self, harness, function, args, **kwargs):
        return self._session.run(harness, self._function, args, **kwargs)


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"_fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _functions(name: str) -> dict[str, str]:
    """Fixture function name -> its source."""
    source = (FIXTURES / f"{name}.py").read_text()
    lines = source.splitlines(keepends=True)
    return {node.name: "".join(lines[node.lineno - 1:node.end_lineno]) for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith(("correct_", "bug_", "cheat_"))}


@pytest.fixture(scope="module", params=EXERCISES)
def graded(request):
    """(exercise, fixture module, {function: {test: Outcome}}, {function: runtime forbidden hits})."""
    exercise = registry.BY_NAME[request.param]
    functions = _functions(exercise.name)
    cells = [Cell(PRELUDE + "".join(functions.values()), "cell 1")]
    session = StudentSession(cells, sandboxed=sandbox.unavailable_reason() is None,
                             forbidden={f: engine._worker_spec(exercise) for f in functions},
                             sentinels=engine._sentinels(exercise), call_timeout=exercise.timeout_s)
    outcomes, hits = {}, {}
    with session:
        session.start()
        for function in functions:
            collector = engine._Collector(_As(session, function), secrets.randbits(62), "cpu", ["meta"])
            engine._run_suites([exercise], collector)
            outcomes[function] = {test: collector.outcomes.get((exercise.name, test)) for test in exercise.tests}
        hits = session.forbidden
    return exercise, _module(exercise.name), outcomes, hits


@pytest.mark.slow
def test_correct_implementations_pass_every_test(graded):
    exercise, _, outcomes, _ = graded
    for function, tests in outcomes.items():
        if function.startswith("correct_"):
            failed = {t: o.message for t, o in tests.items() if o is None or not o.passed}
            assert not failed, f"{exercise.name}: {function} fails {failed}"


@pytest.mark.slow
def test_typical_mistakes_fail_where_expected_with_their_name(graded):
    exercise, module, outcomes, _ = graded
    bugs = {f for f in outcomes if f.startswith("bug_")}
    assert bugs == set(module.EXPECTED_FAILURES), "every bug_ function has its EXPECTED_FAILURES entry"
    for function in sorted(bugs):
        tests = outcomes[function]
        assert not all(o is not None and o.passed for o in tests.values()), f"{function} earns full marks"
        for test, words in module.EXPECTED_FAILURES[function].items():
            outcome = tests[test]
            assert outcome is not None and not outcome.passed, f"{exercise.name}: {function} passes {test}"
            assert words in outcome.message, f"{exercise.name}: {function}, {test}: {words!r} not in {outcome.message!r}"


@pytest.mark.slow
def test_cheats_are_caught_statically_and_at_run_time(graded):
    exercise, module, _, hits = graded
    cheats = {f: s for f, s in _functions(exercise.name).items() if f.startswith("cheat_")}
    assert set(cheats) == set(getattr(module, "EXPECTED_FORBIDDEN", {}))
    for function, source in cheats.items():
        renamed = PRELUDE + source.replace(f"def {function}(", f"def {exercise.name}(", 1)
        found = {f.call for f in scan([renamed], exercise.name, exercise.forbidden)}
        assert module.EXPECTED_FORBIDDEN[function] in found, f"{function}: the static scan found {found}"
        seen = {_name(exercise, h) for h in hits.get(function, [])}
        assert module.EXPECTED_FORBIDDEN[function] in seen, f"{function}: the recorders saw {hits.get(function)}"


def _name(exercise, hit: str) -> str | None:
    from autograder.grading.forbidden import name_for

    try:
        return name_for(exercise, hit)
    except ValueError:
        return None
