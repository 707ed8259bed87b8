"""Stale grades: a score is stale when what it was computed with has changed since.

A grade depends on the assignment's **points** (the registry's tests and their points), its
**hidden suites** (``autograder/suites/test_<exercise>.py`` and the suites' shared code) and the
**reference** (``reference/``). Each graded submission keeps a digest of each (``grade-batch``: in
its JSON record; ``nbgrader autograde``: in the autograded notebook's metadata). When a digest no
longer matches, the front end says which submissions are stale and why, and grades them again:
``grade-batch`` regrades them on its next run; ``nbgrader autograde`` (the course's
``nbgrader_config.py`` calls :func:`invalidate_autograded` first) removes their autograded copies,
so that nbgrader grades them again instead of skipping them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from autograder.course import registry

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "autograder" / "suites"
REFERENCE = ROOT / "reference"
PARTS = ("points", "hidden suites", "reference")
METADATA_KEY = "grader"  # under the autograded notebook's ``autograder`` metadata


def _files_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in paths if p.is_file()):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def parts(assignment: str) -> dict[str, str]:
    """The digests a grade of ``assignment`` depends on, by part (see :data:`PARTS`)."""
    exercises = registry.assignments().get(assignment, [])
    points = json.dumps([[e.name, list(e.tests.items())] for e in exercises])
    suites = [SUITES / f"test_{e.name}.py" for e in exercises] + [p for p in SUITES.glob("*.py") if not p.name.startswith("test_")]
    return {"points": hashlib.sha256(points.encode()).hexdigest()[:16],
            "hidden suites": _files_digest(suites),
            "reference": _files_digest(list(REFERENCE.rglob("*.py")))}


def changed(recorded: Any, assignment: str, current: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The parts that changed since a grade recorded with ``recorded`` (None: unknown, not stale)."""
    if not isinstance(recorded, dict):
        return []
    now = (current or {}).get(assignment) or parts(assignment)
    return [part for part in PARTS if part in recorded and recorded[part] != now[part]]


def reason(what: list[str]) -> str:
    return " and ".join(what) + (" changed" if len(what) > 1 else " changed")


def invalidate_autograded(course_root: Path, log: Callable[[str], None]) -> list[str]:
    """Remove the autograded copies of stale submissions under ``course_root/autograded``, so that
    ``nbgrader autograde`` grades them again; one warning per stale submission."""
    autograded = course_root / "autograded"
    stale = []
    if not autograded.is_dir():
        return stale
    current: dict[str, dict[str, str]] = {}
    for folder in sorted(p for p in autograded.glob("*/*") if p.is_dir() and not p.is_symlink()):
        student, assignment = folder.parent.name, folder.name
        if assignment not in registry.assignments():
            continue
        for notebook in sorted(folder.glob("*.ipynb")):
            try:
                meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("autograder", {})
            except (OSError, ValueError, AttributeError):
                continue
            current.setdefault(assignment, parts(assignment))
            what = changed(meta.get(METADATA_KEY) if isinstance(meta, dict) else None, assignment, current)
            if what:
                log(f"Stale grade: {student}/{assignment} was autograded before the {reason(what).replace(' changed', '')} "
                    f"changed; grading it again")
                stale.append(f"{student}/{assignment}")
                shutil.rmtree(folder)
                break
    return stale
