"""The corpus of known implementations (``tests/fixtures/implementations``), graded by the hidden
suites (the runner: ``tests/corpus_runner.py``); here the first eight exercises under 20 seeds,
``tests/suites/test_implementations_later.py`` the later ones and every cheat.

- every ``correct_*`` implementation passes every test, on every seed (valid alternatives are never
  penalised);
- every ``bug_*`` implementation fails the tests its module's ``EXPECTED_FAILURES`` names, each
  with the named words in its message (the hint names the cause), and the same set of tests on
  every seed: a mistake fails by a wide margin or not at all. Those in ``EXACT_FAILURES`` fail
  exactly the named tests (one slip, one test);
- every ``cheat_*`` implementation (a forbidden routine) is caught, by the static scan of its
  source or by the worker's recorders, and by the recorders naming ``EXPECTED_FORBIDDEN``'s
  routine where the module names one;
- the untouched stub (``raise NotImplementedError()``) passes no test.
"""

from __future__ import annotations

import pytest

from autograder.course import registry
from tests import corpus_runner as corpus

pytestmark = pytest.mark.slow

FIRST_EIGHT = [registry.BY_NAME[name] for name in corpus.FIRST_EIGHT]


def test_every_exercise_has_a_fixture_module():
    assert {e.name for e in corpus.EXERCISES} == {p.stem for p in corpus.FIXTURES.glob("*.py") if p.stem != "__init__"}


@pytest.mark.parametrize("exercise", corpus.EXERCISES, ids=lambda e: e.name)
def test_every_bug_and_cheat_says_what_it_must_fail(exercise: registry.Exercise):
    module = corpus.fixture_module(exercise.name)
    bugs, cheats = set(corpus.functions(exercise.name, "bug_")), set(corpus.functions(exercise.name, "cheat_"))
    assert corpus.functions(exercise.name, "correct_"), "at least one correct implementation"
    assert bugs == set(module.EXPECTED_FAILURES), bugs ^ set(module.EXPECTED_FAILURES)
    assert set(getattr(module, "EXPECTED_FORBIDDEN", {})) <= cheats
    assert set(getattr(module, "EXACT_FAILURES", set())) <= bugs
    tests = set(exercise.tests)
    for bug, expected in module.EXPECTED_FAILURES.items():
        assert expected and set(expected) <= tests, f"{bug} names tests the suite does not have: {set(expected) - tests}"


@pytest.fixture(scope="module")
def grader():
    yield from corpus.warm_grader(FIRST_EIGHT)


@pytest.mark.parametrize("exercise", FIRST_EIGHT, ids=lambda e: e.name)
def test_every_implementation_gets_the_same_verdict_on_every_seed(grader, exercise: registry.Exercise):
    assert len(corpus.seeds_of(exercise)) >= 20
    problems = corpus.verdict_problems(*grader, exercise)
    assert not problems, "\n".join(problems)
