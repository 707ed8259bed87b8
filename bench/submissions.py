"""Realistic class submissions, generated: a mix of correct, buggy and unfinished work.

Each submission is the released notebook of an assignment (``assignments/<id>/<notebook>``) whose
solution cells hold what a student might write: one of the known correct implementations of the
exercise, one of its known typical mistakes (``tests/fixtures/implementations/<exercise>.py``,
``correct_*`` and ``bug_*``), or the untouched stub. Submissions are laid out as nbgrader lays them
out: ``<root>/submitted/<student>/<assignment>/<notebook>``. Generation is deterministic per seed.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = REPO / "tests" / "fixtures" / "implementations"
SUITES = REPO / "autograder" / "suites"
#: Probability of each kind of answer per exercise.
MIX = {"correct": 0.6, "bug": 0.3, "stub": 0.1}


@dataclass(frozen=True)
class Made:
    path: Path
    student: str
    assignment: str
    answers: dict[str, str]  # exercise -> "correct_..." / "bug_..." / "stub"


def implementations(exercise: str) -> dict[str, str]:
    """name -> source of every ``correct_*``/``bug_*``/``cheat_*`` function, renamed to the exercise's name."""
    path = IMPLEMENTATIONS / f"{exercise}.py"
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith(("correct_", "bug_", "cheat_")):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            text = "".join(lines[start:node.end_lineno])
            out[node.name] = text.replace(f"def {node.name}(", f"def {exercise}(", 1)
    return out


def gradable_assignments() -> dict[str, list]:
    """Assignments whose every exercise has a hidden suite and known implementations."""
    from autograder.course import registry

    return {a: exercises for a, exercises in registry.assignments().items()
            if all((SUITES / f"test_{e.name}.py").is_file() and (IMPLEMENTATIONS / f"{e.name}.py").is_file()
                   for e in exercises)}


def release(assignment: str, notebook: str) -> dict:
    for folder in ("assignments", "solutions"):
        path = REPO / folder / assignment / notebook
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"no notebook {assignment}/{notebook}")


def _grade_id(cell: dict) -> str:
    return str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))


def notebook_with(assignment: str, answers: dict[str, str]) -> dict:
    """The release notebook of ``assignment`` with ``answers`` (exercise -> implementation name or
    "stub") in its solution cells."""
    from autograder.course import registry

    exercises = registry.assignments()[assignment]
    nb = release(assignment, exercises[0].notebook)
    for exercise in exercises:
        choice = answers.get(exercise.name, "stub")
        if choice == "stub":
            continue
        source = implementations(exercise.name)[choice]
        cells = [c for c in nb["cells"] if c.get("cell_type") == "code" and _grade_id(c) == exercise.name]
        if len(cells) != 1:
            raise ValueError(f"{assignment}: no single solution cell {exercise.name!r}")
        cells[0]["source"] = source
        cells[0]["outputs"] = []
    return nb


def choose(rng: random.Random, exercise: str) -> str:
    names = sorted(implementations(exercise))
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if kind == "stub":
        return "stub"
    pool = [n for n in names if n.startswith(kind + "_")]
    return rng.choice(pool)


def make_class(root: Path, n: int = 50, seed: int = 0, assignments: list[str] | None = None) -> list[Made]:
    """Write ``n`` submissions under ``root/submitted/`` (round-robin over ``assignments``)."""
    rng = random.Random(seed)
    groups = gradable_assignments()
    chosen = assignments or sorted(groups)
    made = []
    for index in range(n):
        assignment = chosen[index % len(chosen)]
        exercises = groups[assignment]
        answers = {e.name: choose(rng, e.name) for e in exercises}
        student = f"student{index:04d}"
        path = root / "submitted" / student / assignment / exercises[0].notebook
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(notebook_with(assignment, answers), indent=1), encoding="utf-8")
        made.append(Made(path, student, assignment, answers))
    return made
