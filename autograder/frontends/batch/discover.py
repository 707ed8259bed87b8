"""Which notebooks a batch grades, under which stable key, and which are already graded.

A path on the command line is a notebook or a folder. A folder holding ``submitted/`` (an nbgrader
course root), or a ``submitted/`` folder itself, is read in nbgrader's layout exactly:
``submitted/<student>/<assignment>/<name>.ipynb`` belongs to that student and, when the registry
knows it, that assignment; identity comes from those three levels below the course root, never from
deeper folders a student could create inside their own. Any other folder is searched recursively for
``*.ipynb`` (checkpoints and hidden folders skipped), each keyed by its path, its assignment
identified by the engine. Symbolic links (at any level) and files that are not regular are never
read: they are listed as skipped.

Resuming: each submission's JSON record (``outputs.py``) stores the SHA-256 of the notebook it
graded and a fingerprint of the grader (hidden suites, reference, worker, engine, trusted
notebooks). A submission whose record matches both, on the same device, is not graded again.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from autograder.course import registry
from autograder.course.fingerprint import GRADER_FILES, grader_fingerprint  # noqa: F401  (batch records it)
from autograder.errors import UnusableInput

REPO = Path(__file__).resolve().parents[3]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Submission:
    key: str  # unique within the batch and stable across runs
    path: Path
    student: str | None = None  # from the nbgrader layout
    assignment: str | None = None  # from the nbgrader layout, when the registry knows it
    root: Path | None = None  # the folder below which no component may be a symbolic link

    @property
    def notebook(self) -> str:
        return self.path.name

    @property
    def record_name(self) -> str:
        """The file name of this submission's JSON record (safe, and unique per key)."""
        safe = _UNSAFE.sub("_", self.key.replace("/", "__")).strip("._")[:120] or "submission"
        return f"{safe}-{hashlib.sha1(self.key.encode()).hexdigest()[:8]}.json"


def _layout_root(folder: Path) -> Path | None:
    """The ``submitted`` folder of an nbgrader course root (``folder`` itself or its child)."""
    if folder.name == "submitted":
        return folder
    candidate = folder / "submitted"
    return candidate if candidate.is_dir() and not candidate.is_symlink() else None


def _walk(folder: Path, skipped: list[str]) -> list[Path]:
    """Every ``*.ipynb`` regular file under ``folder``, never through a symbolic link (links are
    listed in ``skipped``); hidden folders and checkpoints skipped. Iterative: any depth."""
    found, todo = [], [folder]
    while todo:
        current = todo.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                if entry.name.endswith(".ipynb") or entry.is_dir():
                    skipped.append(f"{Path(entry.path)}: a symbolic link, not read")
                continue
            if entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
            elif entry.name.endswith(".ipynb"):
                if entry.is_file(follow_symlinks=False):
                    found.append(Path(entry.path))
                else:
                    skipped.append(f"{Path(entry.path)}: not a regular file, not read")
    return sorted(found)


def _submitted(root: Path, skipped: list[str]) -> list[tuple[Path, str, str]]:
    """nbgrader's layout, exactly: ``root/<student>/<assignment>/<notebook>.ipynb`` (what
    ``nbgrader autograde`` reads), as (path, student, assignment folder). Deeper notebooks are not
    submissions (a student's folder may hold anything, e.g. ``submitted/<other>/...`` inside it);
    symbolic links at any level are refused."""
    out = []
    for student in _entries(root, skipped):
        for assignment in _entries(student, skipped):
            try:
                entries = sorted(os.scandir(assignment), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(".ipynb"):
                    continue
                if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    skipped.append(f"{Path(entry.path)}: a symbolic link or not a regular file, not read")
                    continue
                out.append((Path(entry.path), student.name, assignment.name))
    return out


def _entries(folder: Path, skipped: list[str]) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            skipped.append(f"{Path(entry.path)}: a symbolic link, not read")
        elif entry.is_dir(follow_symlinks=False):
            out.append(Path(entry.path))
    return out


def discover(paths: list[Path], skipped: list[str] | None = None) -> list[Submission]:
    """Every notebook under ``paths``, once each, in a stable order. Symbolic links and other
    files that are not regular are not submissions (listed in ``skipped`` when given)."""
    skipped = skipped if skipped is not None else []
    out: dict[str, Submission] = {}
    seen: set[tuple[int, int]] = set()
    known = registry.assignments()

    def add(key: str, path: Path, root: Path, student: str | None, assignment: str | None, given: Path) -> None:
        try:
            info = os.lstat(path)
        except OSError:
            return
        if (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        while key in out:  # the same relative path under two folders given
            key = f"{given.resolve().name}/{key}"
        out[key] = Submission(key, path, student, assignment, root)

    for given in paths:
        if given.is_dir():
            root = _layout_root(given)
            if root is not None:
                for path, student, folder in _submitted(root, skipped):
                    add(f"{student}/{folder}/{path.name}", path, root, student,
                        folder if folder in known else None, given)
            else:
                for path in _walk(given, skipped):
                    add(path.relative_to(given).as_posix(), path, given, None, None, given)
        elif given.is_file() or given.is_symlink():
            if given.is_symlink() or not given.is_file():
                skipped.append(f"{given}: a symbolic link or not a regular file, not read")
                continue
            parts = given.absolute().parts
            student = assignment = None
            root = given.parent
            if len(parts) >= 4 and parts[-4] == "submitted":  # named by the instructor: its own layout
                student, folder = parts[-3], parts[-2]
                assignment = folder if folder in known else None
                root = given.parent.parent.parent
            add(f"{student}/{parts[-2]}/{given.name}" if student else given.as_posix(), given, root,
                student, assignment, given)
        else:
            raise UnusableInput(f"{given}: no such file or folder")
    return list(out.values())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
