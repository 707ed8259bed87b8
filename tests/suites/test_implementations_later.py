"""The corpus of known implementations of the exercises after the first eight (under
``corpus_runner.LATER_SEEDS``), and every cheat of the corpus: what is checked is said in
``tests/suites/test_implementations.py``."""

from __future__ import annotations

import pytest

from autograder.course import registry
from tests import corpus_runner as corpus

pytestmark = pytest.mark.slow

LATER = [e for e in corpus.EXERCISES if e.name not in corpus.FIRST_EIGHT]


@pytest.fixture(scope="module")
def grader():
    yield from corpus.warm_grader(corpus.EXERCISES)


@pytest.mark.parametrize("exercise", LATER, ids=lambda e: e.name)
def test_every_implementation_gets_the_same_verdict_on_every_seed(grader, exercise: registry.Exercise):
    problems = corpus.verdict_problems(*grader, exercise)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("exercise, function", corpus.CHEATS, ids=[f"{e.name}-{f}" for e, f in corpus.CHEATS])
def test_cheats_are_caught(grader, exercise: registry.Exercise, function: str):
    problems = corpus.cheat_problems(*grader, exercise, function)
    assert not problems, "\n".join(problems)
