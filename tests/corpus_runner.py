"""The runner of the corpus of known implementations (``tests/fixtures/implementations``), shared
by ``tests/suites/test_implementations.py`` (the first eight exercises, 20 seeds) and
``tests/suites/test_implementations_later.py`` (the later ones, and every cheat): see the first for what
is checked.

Fast on purpose: one warm (sandboxed where possible) worker holds every fixture module, each in a
namespace of its own; one pytest session holds every suite (``SuiteRunner``); the exercise's name
is bound to one implementation after another (``StudentSession.rebind``), each implementation and
seed graded as a submission of its own (``reset_budgets``).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
from pathlib import Path
from types import ModuleType
from typing import Iterator

from autograder.course import registry
from autograder.grading import engine
from autograder.grading.runner import Collector, Outcome, SuiteRunner
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.session import Cell, StudentSession
from autograder.submission.scan import scan

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "implementations"
EXERCISES = [e for exercises in registry.assignments().values() for e in exercises]
FIRST_EIGHT = ("softmax", "cross_entropy", "dropout", "corr2d", "clip_grad", "adam_step", "self_attention",
               "q_learning_update")
SEEDS = [7919 * i + 104729 for i in range(20)]
#: Seeds of the exercises after the first eight (their suites are costlier: episodes, models).
LATER_SEEDS = SEEDS[:2]
#: What the worker has before the fixture modules (the notebooks' set-up cells import the same).
SETUP = "import math\nimport numpy as np\nimport torch\nfrom torch import nn\n"


@functools.cache
def fixture_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def functions(name: str, prefix: str) -> list[str]:
    module = fixture_module(name)
    return [attr for attr, value in vars(module).items() if attr.startswith(prefix) and inspect.isfunction(value)]


def seeds_of(exercise: registry.Exercise) -> list[int]:
    return SEEDS if exercise.name in FIRST_EIGHT else LATER_SEEDS


def _namespace_cell(exercise: registry.Exercise) -> str:
    """The fixture module run in a namespace of its own (``<exercise>__fixtures``: modules share
    helper names), with the untouched stub beside its implementations."""
    source = SETUP + (FIXTURES / f"{exercise.name}.py").read_text(encoding="utf-8")  # what a notebook has
    source += f"\n\ndef stub({exercise.signature}):\n    raise NotImplementedError()\n"
    space = f"{exercise.name}__fixtures"
    return (f"{space} = __import__('types').ModuleType({space!r})\n"
            f"exec(compile({source!r}, '<fixtures/{exercise.name}.py>', 'exec'), {space}.__dict__)\n")


def _bind(session: StudentSession, exercise: registry.Exercise, function: str) -> None:
    session.rebind(exercise.name, f"{exercise.name} = {exercise.name}__fixtures.{function}")


def warm_grader(exercises: list[registry.Exercise]) -> Iterator[tuple[StudentSession, SuiteRunner]]:
    """For a module-scoped fixture: a warm session holding the fixture modules of ``exercises``,
    and the suite server."""
    sandboxed = sandbox.unavailable_reason() is None
    lease = sandbox.lease_slot() if sandboxed else None
    cells = [Cell(SETUP, "cell [1]")] + [Cell(_namespace_cell(e), f"cell [{i}]") for i, e in enumerate(exercises, 2)]
    session = StudentSession(cells, sandboxed=sandboxed, slot=lease.slot if lease else 0,
                             forbidden={e.name: engine._worker_spec(e) for e in exercises},
                             sentinels=sorted({s for e in exercises for s in engine._sentinels(e)}),
                             call_timeout=max(e.timeout_s for e in exercises))
    server = SuiteRunner().start()
    try:
        session.start()
        assert not session.load_problems, session.load_problems
        yield session, server
    finally:
        session.close()
        server.close()
        if lease:
            lease.release()


def _outcomes(session: StudentSession, server: SuiteRunner, exercise: registry.Exercise,
              seed: int) -> dict[str, Outcome]:
    session.reset_budgets()  # each implementation and seed is a submission of its own
    collector = Collector(session, seed, "cpu", ["meta"])
    server([exercise], collector)
    return {test: collector.outcomes.get((exercise.name, test), Outcome(False, "did not run"))
            for test in exercise.tests}


def _failing(outcomes: dict[str, Outcome]) -> dict[str, str]:
    return {test: outcome.message for test, outcome in outcomes.items() if not outcome.passed}


def _verdict_problems(function: str, expected: dict[str, str], exact: bool,
                      failing: dict[str, str]) -> list[str]:
    if function.startswith("correct_"):
        return ["a correct implementation fails " + "; ".join(f"{t}: {m[:200]}" for t, m in failing.items())] \
            if failing else []
    problems = []
    if not set(expected) <= set(failing):
        problems.append(f"fails {sorted(failing)}, not all of {sorted(expected)}")
    wrong = {t: m[:300] for t, m in failing.items() if t in expected and expected[t].lower() not in m.lower()}
    if wrong:
        problems.append(f"messages without the expected words: {wrong}")
    if exact and set(failing) != set(expected):
        problems.append(f"one slip, one test: fails {sorted(failing)}, exactly {sorted(expected)} expected")
    return problems


def verdict_problems(session: StudentSession, server: SuiteRunner, exercise: registry.Exercise) -> list[str]:
    """Every correct and buggy implementation of ``exercise`` on each of its seeds, and the stub:
    what deviates from the module's expectations."""
    module = fixture_module(exercise.name)
    exact = getattr(module, "EXACT_FAILURES", set())
    problems = []
    for function in functions(exercise.name, "correct_") + functions(exercise.name, "bug_"):
        _bind(session, exercise, function)
        expected = module.EXPECTED_FAILURES.get(function, {})
        verdicts: dict[frozenset[str], list[int]] = {}
        for seed in seeds_of(exercise):
            failing = _failing(_outcomes(session, server, exercise, seed))
            verdicts.setdefault(frozenset(failing), []).append(seed)
            found = _verdict_problems(function, expected, function in exact, failing)
            if found or len(verdicts) > 1:
                problems += [f"{function}, seed {seed}: {p}" for p in found]
                break
        if len(verdicts) > 1:
            problems.append(f"{function}: the verdict depends on the seed: "
                            + "; ".join(f"seeds {seeds[:3]} fail {sorted(tests)}" for tests, seeds in verdicts.items()))
    _bind(session, exercise, "stub")
    passed = [t for t, o in _outcomes(session, server, exercise, SEEDS[0]).items() if o.passed]
    if passed:
        problems.append(f"the untouched stub passes {passed}")
    return problems


CHEATS = [(e, f) for e in EXERCISES for f in functions(e.name, "cheat_")]


def cheat_problems(session: StudentSession, server: SuiteRunner, exercise: registry.Exercise,
                   function: str) -> list[str]:
    """A cheat must be caught by the static scan or the recorders (by the recorders, naming the
    routine, where ``EXPECTED_FORBIDDEN`` says which)."""
    source = inspect.getsource(getattr(fixture_module(exercise.name), function))
    renamed = ast.unparse(ast.parse(source.replace(f"def {function}(", f"def {exercise.name}(", 1)))
    static = [f.call for f in scan([SETUP, renamed], exercise.name, exercise.forbidden)]
    _bind(session, exercise, function)
    _outcomes(session, server, exercise, SEEDS[0])
    seen = engine._runtime_findings(exercise, session.forbidden.get(exercise.name, []))
    problems = [] if static or seen else [f"{function} is caught neither by the static scan nor by the recorders"]
    routine = getattr(fixture_module(exercise.name), "EXPECTED_FORBIDDEN", {}).get(function)
    if routine and not any(routine in hit for hit in seen):
        problems.append(f"the recorders did not name {routine}: {seen}")
    return problems
