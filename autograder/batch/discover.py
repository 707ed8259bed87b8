"""Which notebooks a batch grades, under which stable key, and which are already graded.

A path on the command line is a notebook or a folder. A folder is searched recursively for
``*.ipynb`` (checkpoints and hidden folders skipped); a folder holding ``submitted/`` (an nbgrader
course root) is searched in ``submitted/`` only. A notebook at ``.../submitted/<student>/<assignment>/
<name>.ipynb`` (nbgrader's layout) belongs to that student and, when the registry knows it, that
assignment; any other notebook is keyed by its path and its assignment is identified by the engine.

Resuming: each submission's JSON record (``outputs.py``) stores the SHA-256 of the notebook it
graded and a fingerprint of the grader (hidden suites, reference, worker, engine, trusted
notebooks). A submission whose record matches both, on the same device, is not graded again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from autograder import registry
from autograder.errors import UnusableInput

REPO = Path(__file__).resolve().parents[2]
#: What the grader's verdicts depend on: a change to any of these regrades every submission.
GRADER_FILES = ("autograder/*.py", "autograder/suites/*.py", "autograder/worker/*.py", "reference/**/*.py",
                "assignments/*/*.ipynb")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Submission:
    key: str  # unique within the batch and stable across runs
    path: Path
    student: str | None = None  # from the nbgrader layout
    assignment: str | None = None  # from the nbgrader layout, when the registry knows it

    @property
    def notebook(self) -> str:
        return self.path.name

    @property
    def record_name(self) -> str:
        """The file name of this submission's JSON record (safe, and unique per key)."""
        safe = _UNSAFE.sub("_", self.key.replace("/", "__")).strip("._")[:120] or "submission"
        return f"{safe}-{hashlib.sha1(self.key.encode()).hexdigest()[:8]}.json"


def _notebooks(folder: Path) -> list[Path]:
    if (folder / "submitted").is_dir():
        folder = folder / "submitted"
    found = []
    for path in folder.rglob("*.ipynb"):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative):  # .ipynb_checkpoints, hidden folders
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def _layout(path: Path) -> tuple[str | None, str | None]:
    parts = path.resolve().parts
    if len(parts) >= 4 and parts[-4] == "submitted":
        student, assignment = parts[-3], parts[-2]
        return student, assignment if assignment in registry.assignments() else None
    return None, None


def discover(paths: list[Path]) -> list[Submission]:
    """Every notebook under ``paths``, once each, in a stable order."""
    out: dict[str, Submission] = {}
    seen: set[Path] = set()
    for given in paths:
        if given.is_dir():
            pairs = [(nb, nb.relative_to(given).as_posix()) for nb in _notebooks(given)]
        elif given.is_file():
            pairs = [(given, given.as_posix())]
        else:
            raise UnusableInput(f"{given}: no such file or folder")
        for path, relative in pairs:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            student, assignment = _layout(path)
            key = f"{student}/{path.resolve().parts[-2]}/{path.name}" if student else relative
            while key in out:  # the same relative path under two folders given
                key = f"{given.resolve().name}/{key}"
            out[key] = Submission(key, path, student, assignment)
    return list(out.values())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def grader_fingerprint() -> str:
    """A digest of everything the verdicts depend on (see ``GRADER_FILES``)."""
    digest = hashlib.sha256()
    for pattern in GRADER_FILES:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]
