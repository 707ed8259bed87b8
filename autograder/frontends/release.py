"""Regenerate the student notebooks in ``assignments/`` from ``solutions/`` with nbgrader.

    python -m autograder.frontends.release            # regenerate assignments/
    python -m autograder.frontends.release --check    # regenerate into a temporary folder; exit 1 on drift

The pipeline, one small stage each:

0. **sync** — the cells the registry owns are written into the solution notebooks: each
   exercise's public check cell (``check_<name>``), its graded cell (``test_<name>``, with the
   registry's points in nbgrader's metadata) and the "*Autograded (N points): ...*" line above it
   (the prose after the colon is the author's; a missing line gets one from the test names).
   Points are typed once, in the registry; a missing check or graded cell is added after the
   exercise's solution cell. ``--check`` reports a solution notebook out of sync as drift.
1. **generate** — the real ``nbgrader generate_assignment <id> --force``, run from the course root
   (where ``nbgrader_config.py`` lives); with no ids, one run with the id ``*`` converts every
   assignment (nbgrader's start-up costs more than converting a notebook), and the registry's
   assignments whose solution notebooks exist are kept. The release folder, gradebook and log go
   to a temporary folder, so an instructor's ``gradebook.db`` is never touched and nothing but
   notebooks reaches ``assignments/``.
2. **normalise** — no outputs, no execution counts, no execution timing metadata, nbformat's
   canonical JSON: generation is deterministic, so ``assignments/`` can be committed and checked.
3. **write** (or **compare** with ``--check``) — ``assignments/`` becomes exactly the generated
   notebooks: changed files are rewritten, stale ones removed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.course.registry import CHECK_PREFIX, TEST_PREFIX, Exercise, assignments

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = "solutions"
RELEASE = "assignments"


class ReleaseError(RuntimeError):
    """nbgrader could not generate an assignment (its log is in the message)."""


@dataclass(frozen=True)
class Drift:
    path: str  # relative to assignments/
    problem: str  # "differs", "missing", "stale"

    def __str__(self) -> str:
        return f"{RELEASE}/{self.path}: {self.problem}"


# -- the cells the registry owns ----------------------------------------------------------------

#: "*Autograded (N points): what is graded.*", the line above each graded cell.
AUTOGRADED = re.compile(r"^\*Autograded \((\d+) points?\)(?P<rest>.*)$", re.S)


def check_source(exercise: Exercise) -> str:
    return f"from autograder.public import check\n\ncheck({exercise.name})"


def graded_source(exercise: Exercise) -> str:
    return (f"# Autograded: the hidden tests for `{exercise.name}` run in the grader's sandbox, not in this kernel.\n"
            f"from autograder.public import check\ncheck({exercise.name})\n"
            "### BEGIN HIDDEN TESTS\n"
            "from autograder.public import hidden_tests_run_by_the_grader\n"
            f'hidden_tests_run_by_the_grader("{exercise.name}")\n'
            "### END HIDDEN TESTS")


def autograded_line(exercise: Exercise, rest: str | None = None) -> str:
    if rest is None:  # what the tests are named after, in report order
        rest = ": " + ", ".join(t.removeprefix("test_").replace("_", " ") for t in exercise.tests) + ".*"
    return f"*Autograded ({exercise.points} points){rest}"


def _nbgrader(grade_id: str, *, points: int | None = None) -> dict:
    meta = {"grade": points is not None, "grade_id": grade_id, "locked": True, "schema_version": 3,
            "solution": False, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _index(nb: nbformat.NotebookNode, grade_id: str) -> int | None:
    found = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return found[0] if found else None


def sync_notebook(nb: nbformat.NotebookNode, exercises: list[Exercise]) -> list[str]:
    """Write the registry's cells of ``exercises`` into the solution notebook ``nb`` (in place);
    return what changed, one line each (nothing when it was in sync)."""
    changes: list[str] = []
    for exercise in exercises:
        solution = _index(nb, exercise.name)
        if solution is None:
            raise ReleaseError(f"{exercise.notebook_path}: no solution cell with grade_id {exercise.name!r}")
        check = _index(nb, CHECK_PREFIX + exercise.name)
        if check is None:
            nb.cells[solution + 1:solution + 1] = [
                nbformat.v4.new_markdown_cell(f"### Check your `{exercise.name}`", id=f"check-{exercise.name}-title"),
                nbformat.v4.new_code_cell(check_source(exercise), id=f"check-{exercise.name}",
                                          metadata=_nbgrader(CHECK_PREFIX + exercise.name))]
            check = solution + 2
            changes.append(f"added the check cell of {exercise.name}")
        elif nb.cells[check].source != check_source(exercise):
            nb.cells[check].source = check_source(exercise)
            changes.append(f"rewrote the check cell of {exercise.name}")
        graded = _index(nb, TEST_PREFIX + exercise.name)
        if graded is None:
            nb.cells[check + 1:check + 1] = [
                nbformat.v4.new_code_cell(graded_source(exercise), id=f"test-{exercise.name}",
                                          metadata=_nbgrader(TEST_PREFIX + exercise.name, points=exercise.points))]
            graded = check + 1
            changes.append(f"added the graded cell of {exercise.name}")
        cell = nb.cells[graded]
        if cell.source != graded_source(exercise):
            cell.source = graded_source(exercise)
            changes.append(f"rewrote the graded cell of {exercise.name}")
        meta = cell.metadata.setdefault("nbgrader", {})
        if meta.get("points") != exercise.points or not meta.get("grade"):
            meta.update(grade=True, points=exercise.points)
            changes.append(f"{exercise.name}: {exercise.points} points in the graded cell's metadata")
        above = nb.cells[graded - 1]
        match = AUTOGRADED.match(above.source) if above.cell_type == "markdown" else None
        if match is None:
            nb.cells.insert(graded, nbformat.v4.new_markdown_cell(autograded_line(exercise),
                                                                  id=f"autograded-{exercise.name}"))
            changes.append(f"added the Autograded line of {exercise.name}")
        elif above.source != autograded_line(exercise, match.group("rest")):
            above.source = autograded_line(exercise, match.group("rest"))
            changes.append(f"{exercise.name}: {exercise.points} points in the Autograded line")
    return changes


def sync(root: Path = ROOT, only: list[str] | None = None, *, write: bool = True) -> list[str]:
    """Bring every releasable solution notebook in line with the registry (or, with ``write=False``,
    only say what is out of line): lines "solutions/<path>: <change>"."""
    out = []
    for assignment, notebooks in releasable(root).items():
        if only and assignment not in only:
            continue
        for notebook in notebooks:
            path = root / SOLUTIONS / assignment / notebook
            nb = nbformat.read(path, as_version=4)
            exercises = [e for e in assignments()[assignment] if e.notebook == notebook]
            changes = sync_notebook(nb, exercises)
            out += [f"{SOLUTIONS}/{assignment}/{notebook}: {change}" for change in changes]
            if changes and write:
                text = nbformat.writes(nb)
                path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return out


# -- stages -------------------------------------------------------------------------------------


def releasable(root: Path = ROOT) -> dict[str, list[str]]:
    """Assignment id -> its notebook files, for the registry's assignments whose solutions exist."""
    out: dict[str, list[str]] = {}
    for assignment, exercises in assignments().items():
        notebooks = sorted({exercise.notebook for exercise in exercises})
        if all((root / SOLUTIONS / assignment / notebook).is_file() for notebook in notebooks):
            out[assignment] = notebooks
    return out


def missing_solutions(root: Path = ROOT) -> list[str]:
    """Registry notebooks that have no solution notebook yet (skipped by the release)."""
    return sorted(
        f"{SOLUTIONS}/{exercise.notebook_path}"
        for exercises in assignments().values()
        for exercise in exercises
        if not (root / SOLUTIONS / exercise.notebook_path).is_file()
    )


def generate(assignment: str, workdir: Path, root: Path = ROOT) -> Path:
    """Run ``nbgrader generate_assignment <assignment> --force`` (``*`` = every folder of
    solutions/, in one process); return the release folder, which holds one folder per assignment."""
    release_dir = workdir / "release"
    command = [
        sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force",
        f"--CourseDirectory.release_directory={release_dir}",
        f"--CourseDirectory.db_url=sqlite:///{workdir / 'gradebook.db'}",
        f"--NbGrader.logfile={workdir / 'nbgrader.log'}",
    ]
    # nbgrader runs the `alembic` executable of its own environment to set up the gradebook.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"nbgrader generate_assignment {assignment} failed:\n{done.stdout}{done.stderr}")
    return release_dir


def normalise(notebook_json: str) -> str:
    """The canonical text of a released notebook: no outputs, counts or execution timings."""
    nb = nbformat.reads(notebook_json, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build(root: Path = ROOT, only: list[str] | None = None) -> dict[str, str]:
    """Generate and normalise every releasable assignment: relative path -> notebook text, plus the
    data files (text) that nbgrader copies from the assignment's solution folder unchanged, such as
    the text a demo trains on."""
    targets = releasable(root)
    if only:
        unknown = sorted(set(only) - set(targets))
        if unknown:
            raise ReleaseError(f"not releasable (unknown assignment, or its solution notebooks are missing): {unknown}")
        targets = {assignment: targets[assignment] for assignment in only}
    tree: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        # One nbgrader process for all: its start-up costs more than converting a notebook.
        release_dir = generate(only[0] if only and len(only) == 1 else "*", Path(tmp), root)
        for assignment, notebooks in targets.items():
            folder = release_dir / assignment
            produced = sorted(path.name for path in folder.iterdir() if path.suffix == ".ipynb")
            if produced != notebooks:
                raise ReleaseError(f"{assignment}: nbgrader released {produced}, expected exactly {notebooks}")
            for notebook in notebooks:
                tree[f"{assignment}/{notebook}"] = normalise((folder / notebook).read_text(encoding="utf-8"))
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix != ".ipynb":
                    tree[f"{assignment}/{path.relative_to(folder).as_posix()}"] = path.read_text(encoding="utf-8")
    return tree


def current(root: Path = ROOT, only: list[str] | None = None) -> dict[str, str]:
    """The files now in assignments/ (all of them, or those of the given assignments)."""
    base = root / RELEASE
    if not base.is_dir():
        return {}
    files = {
        path.relative_to(base).as_posix(): path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(base.rglob("*"))
        if path.is_file()
    }
    if only:
        files = {path: text for path, text in files.items() if path.split("/")[0] in only}
    return files


def compare(expected: dict[str, str], actual: dict[str, str]) -> list[Drift]:
    drift = [Drift(path, "missing") for path in sorted(set(expected) - set(actual))]
    drift += [Drift(path, "stale (not generated from solutions/)") for path in sorted(set(actual) - set(expected))]
    drift += [Drift(path, "differs from what nbgrader generates") for path in sorted(set(expected) & set(actual)) if expected[path] != actual[path]]
    return drift


def write(expected: dict[str, str], root: Path = ROOT, only: list[str] | None = None) -> list[Drift]:
    """Make assignments/ exactly ``expected``; return what changed."""
    changes = compare(expected, current(root, only))
    base = root / RELEASE
    for change in changes:
        path = base / change.path
        if change.path in expected:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected[change.path], encoding="utf-8")
        else:
            path.unlink()
    for folder in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return changes


def _diff(old: str, new: str, path: str, limit: int = 20) -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"{RELEASE}/{path}", "generated", lineterm=""))
    more = f"\n    ... ({len(lines) - limit} more diff lines)" if len(lines) > limit else ""
    return "\n".join("    " + line for line in lines[:limit]) + more


# -- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.frontends.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("assignments", nargs="*", help="assignment ids (default: every assignment)")
    parser.add_argument("--check", action="store_true", help="only report drift from solutions/ (exit 1)")
    args = parser.parse_args(argv)

    only = args.assignments or None
    for path in missing_solutions(root):
        print(f"skipped (no solution notebook yet): {path}")
    try:
        synced = sync(root, only, write=not args.check)
        expected = build(root, only)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in synced:
        print(f"{'out of sync with the registry' if args.check else 'synced'}: {line}")
    if args.check:
        actual = current(root, only)
        drift = compare(expected, actual)
        for item in drift:
            print(item)
            if item.path in expected and item.path in actual:
                print(_diff(actual[item.path], expected[item.path], item.path))
        if drift or synced:
            print(f"{len(drift) + len(synced)} difference(s): run `make assignments` and commit the result.")
            return 1
        print(f"{RELEASE}/ is up to date ({len(expected)} notebook(s)).")
        return 0
    changes = write(expected, root, only)
    for change in changes:
        print(f"{'wrote' if change.path in expected else 'removed'} {RELEASE}/{change.path}")
    print(f"{RELEASE}/: {len(expected)} notebook(s), {len(changes)} change(s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
