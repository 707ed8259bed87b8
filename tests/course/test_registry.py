"""The registry is the single declaration of every exercise: everything else must agree with it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import reference
from autograder.course import registry

ROOT = Path(__file__).resolve().parents[2]
EXERCISES_MD = ROOT / "docs" / "exercises.md"
SUITES = ROOT / "autograder" / "suites"


@pytest.mark.parametrize("exercise", registry.EXERCISES, ids=lambda e: e.name)
def test_reference_signature_matches_registry(exercise: registry.Exercise) -> None:
    function = getattr(reference, exercise.name)
    actual = [(p.name, p.default) for p in inspect.signature(function).parameters.values()]
    assert actual == _parameters(exercise.signature), (
        f"reference.{exercise.name}{inspect.signature(function)} differs from the registry's ({exercise.signature})"
    )


def _parameters(signature: str) -> list[tuple[str, object]]:
    """(name, default) pairs of a parameter list, defaults evaluated as literals."""
    args = ast.parse(f"def f({signature}): pass").body[0].args
    defaults = [inspect.Parameter.empty] * (len(args.args) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults]
    return [(a.arg, d) for a, d in zip(args.args, defaults)]


@pytest.mark.parametrize("exercise", registry.EXERCISES, ids=lambda e: e.name)
def test_signature_matches_the_contract(exercise: registry.Exercise) -> None:
    """docs/exercises.md (the contract) has a section for every declared exercise, with its signature."""
    text = EXERCISES_MD.read_text()
    heading = re.search(rf"^## \d+\. `{exercise.name}\((.*?)\)`", text, flags=re.MULTILINE)
    assert heading, f"docs/exercises.md has no section for {exercise.name}"
    assert heading.group(1) == exercise.signature


@pytest.mark.parametrize("exercise", registry.EXERCISES, ids=lambda e: e.name)
def test_suite_tests_are_exactly_the_registry_tests(exercise: registry.Exercise) -> None:
    """Every hidden test has points, and every pointed test exists (in the declared order)."""
    suite = SUITES / f"test_{exercise.name}.py"
    assert suite.is_file(), f"missing hidden suite {suite.name}"
    tree = ast.parse(suite.read_text())
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    assert names == list(exercise.tests), f"{suite.name} defines {names}, the registry declares {list(exercise.tests)}"
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert constants.get("EXERCISE") == exercise.name


def test_names_are_unique_and_points_positive() -> None:
    names = [e.name for e in registry.EXERCISES]
    assert len(names) == len(set(names))
    for exercise in registry.EXERCISES:
        assert exercise.points > 0 and all(p > 0 for p in exercise.tests.values()), exercise.name
        assert exercise.public_cases, f"{exercise.name} has no public case"


def test_each_assignment_is_one_notebook() -> None:
    for assignment, exercises in registry.assignments().items():
        assert len({e.notebook for e in exercises}) == 1, assignment
        assert (ROOT / "solutions" / assignment / exercises[0].notebook).is_file()
