"""Reading a submission as data: which assignment it is, and which code the worker runs.

Nothing here executes student code. The submission's cell metadata is not trusted: the grader's
own copy of the released notebook (``assignments/<id>/<notebook>``) says which cells are locked
set-up code (re-run from the trusted copy), and which are public checks, autograder tests or demos
(never run by the grader). Every other code cell of the submission is the student's and runs in
the worker, in notebook order, after IPython syntax (magics, ``!`` lines) has been turned into
plain Python that the worker's ``get_ipython()`` stub ignores.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

import nbformat

from autograder.course import registry
from autograder.sandbox.session import Cell
from autograder.errors import UnusableInput
from autograder.safeio import read_submitted

REPO = Path(__file__).resolve().parents[2]
RELEASE_DIR = REPO / "assignments"
SOURCE_DIR = REPO / "solutions"
from autograder.limits import (MAX_CELL_BYTES, MAX_CELLS, MAX_CODE_BYTES, MAX_CODE_CELLS, MAX_IPYTHON_CELL_BYTES,  # noqa: F401
                     MAX_IPYTHON_CELLS, MAX_NESTING, MAX_NOTEBOOK_BYTES)

_SKIPPED_PREFIXES = (registry.CHECK_PREFIX, registry.TEST_PREFIX, registry.DEMO_PREFIX)


@dataclass
class Extracted:
    cells: list[Cell]  # what the worker executes, in order
    student_sources: list[str]  # the student's cells as plain Python (for the static scan)
    # their syntax trees, parsed once here (None for a cell not run), read by the static scan and
    # by graded_spans: never parsed again
    student_trees: list[ast.Module | None] = field(default_factory=list)
    student_labels: list[str] = field(default_factory=list)  # "cell 7", parallel to student_sources
    problems: list[str] = field(default_factory=list)  # one line each, shown in the report
    definitions: dict[str, ast.FunctionDef] = field(default_factory=dict)  # last def per name
    defined_in: dict[str, list[str]] = field(default_factory=dict)  # name -> labels of the cells defining it
    notices: list[str] = field(default_factory=list)  # structural notices (not problems), one line each


@dataclass(frozen=True)
class Submitted:
    """A submission as received, not as a file: its bytes and the name it was submitted under (the
    notebook's file name, which tells its assignment). Front ends that hold a submission in memory
    (a batch task, nbgrader's converted notebook, a pull request's blob) grade it as it is."""

    name: str
    data: bytes


def load(path: str | Path | Submitted) -> nbformat.NotebookNode:
    """Read and validate a notebook, or raise UnusableInput with one line saying why."""
    if isinstance(path, Submitted):
        return parse(path.data, path.name)
    path = Path(path)
    return parse(read_submitted(path, limit=MAX_NOTEBOOK_BYTES), str(path))  # a regular file only, never a link


def parse(raw: bytes, path: str) -> nbformat.NotebookNode:
    """A notebook from its bytes (``path`` names it in messages), or UnusableInput."""
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise UnusableInput(f"{path}: {len(raw)} bytes, more than the {MAX_NOTEBOOK_BYTES} a notebook may have")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UnusableInput(f"{path}: not a notebook (the file is not JSON)") from None
    except ValueError:  # valid JSON past what Python reads, e.g. an integer of more than 4,300 digits
        raise UnusableInput(f"{path}: not a notebook (the JSON holds a number too long to read)") from None
    if not isinstance(data, dict) or "cells" not in data or not isinstance(data.get("cells"), list):
        raise UnusableInput(f"{path}: not a notebook (JSON without a list of cells)")
    if len(data["cells"]) > MAX_CELLS:  # before nbformat validates them one by one
        raise UnusableInput(f"{path}: {len(data['cells'])} cells, more than the {MAX_CELLS} a notebook may have")
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as exc:  # nbformat raises several types for malformed documents
        raise UnusableInput(f"{path}: not a valid notebook ({exc.__class__.__name__})") from None
    return nb


def renamed(found: str, assignment: str) -> str | None:
    """One line when ``found`` is not the released file name of ``assignment``'s notebook, else None.

    Every front end refuses a renamed notebook with this message (``grade``, ``grade-batch``,
    ``nbgrader autograde``): nbgrader grades only the released names, so the others do the same.
    """
    expected = sorted({e.notebook for e in registry.assignments().get(assignment, [])})
    if not expected or found in expected:
        return None
    return (f"renamed notebook: `{found}` is not graded; assignment {assignment} is graded from "
            f"`{'`, `'.join(expected)}` (keep the released file name)")


def identify(nb: nbformat.NotebookNode, path: str | Path | Submitted, assignment: str | None = None, *,
             allow_renamed: bool = False) -> tuple[str, list[registry.Exercise]]:
    """The assignment a submission belongs to: given, or by file name; a notebook under another name
    is refused as renamed (see :func:`renamed`), unless ``allow_renamed`` (the self-check), where the
    functions it defines tell."""
    groups = registry.assignments()
    if assignment is not None:
        if assignment not in groups:
            raise UnusableInput(f"unknown assignment {assignment!r}; known: {', '.join(groups)}")
        return assignment, groups[assignment]
    name = Path(path.name if isinstance(path, Submitted) else path).name
    if isinstance(path, Submitted):
        path = path.name
    for assignment_id, exercises in groups.items():
        if exercises[0].notebook == name:
            return assignment_id, exercises
    text = "\n".join(_source(c) for c in nb.cells if c.get("cell_type") == "code")
    best = max(groups.items(), key=lambda item: sum(f"def {e.name}(" in text for e in item[1]))
    if not any(f"def {e.name}(" in text for e in best[1]):
        raise UnusableInput(f"{path}: cannot tell which assignment this notebook belongs to "
                            "(no graded function found); pass --assignment")
    if not allow_renamed:
        raise UnusableInput(renamed(name, best[0]) or f"{path}: not a notebook of the course")
    return best


def trusted_notebook(assignment: str) -> nbformat.NotebookNode | None:
    """The grader's own copy of the released notebook (only its locked cells are used): read and
    validated once per version of the file, a fresh copy for each submission."""
    exercises = registry.assignments()[assignment]
    for folder in (RELEASE_DIR, SOURCE_DIR):
        path = folder / assignment / exercises[0].notebook
        try:
            stat = path.stat()
        except OSError:
            continue
        if S_ISREG(stat.st_mode):
            return copy.deepcopy(_read_release(str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
    return None


@functools.lru_cache(maxsize=64)
def _read_release(path: str, mtime_ns: int, size: int, inode: int) -> nbformat.NotebookNode:
    """One version of a released notebook (the key's stat fields make a changed file a new entry)."""
    return nbformat.read(path, as_version=4)


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _grade_id(cell: dict) -> str:
    meta = cell.get("metadata", {})
    nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return str(nbg.get("grade_id", "")) if isinstance(nbg, dict) else ""


def _is_solution(cell: dict) -> bool:
    nbg = cell.get("metadata", {}).get("nbgrader", {})
    return bool(isinstance(nbg, dict) and nbg.get("solution", False))


def _is_setup(grade_id: str) -> bool:
    return grade_id.startswith(registry.SETUP_PREFIXES)


_IPYTHON_SYNTAX = re.compile(r"^[ \t]*(?:%|!)|^[^#\n]*=[ \t]*(?:%|!)|\?[ \t]*$", re.M)


def has_ipython_syntax(source: str) -> bool:
    """Whether a cell may hold IPython syntax (magics, shell escapes, ``obj?``): a cheap scan."""
    return _IPYTHON_SYNTAX.search(source) is not None


def to_python(source: str) -> str:
    """IPython syntax (``%magic``, ``!cmd``, ``%%cell``) to plain Python, as a string transform.
    Plain Python, and cells with no IPython syntax, are returned as they are: IPython's transformer
    is slow (seconds for a few hundred KiB), so it only ever sees small cells that need it."""
    if not has_ipython_syntax(source) or len(source) > MAX_IPYTHON_CELL_BYTES:
        return source
    try:
        ast.parse(source)
        return source
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - leave the source as is; the syntax check reports it
        return source


def _too_deep(tree: ast.AST, limit: int) -> bool:
    """True when the syntax tree is more than ``limit`` levels deep (iterative: any depth)."""
    todo = [(tree, 0)]
    while todo:
        node, depth = todo.pop()
        if depth > limit:
            return True
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return False


def _first_line(source: str, limit: int = 40) -> str:
    line = next((row.strip() for row in source.splitlines() if row.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cell_label(cell: dict, number: int) -> str:
    """How a student finds a cell: its number as Jupyter shows it (``[5]``, or ``[ ]`` when it was
    never run) and its first line. Every label starts with ``cell `` (the worker recognises the
    student's own frames by it)."""
    count = cell.get("execution_count")
    shown = f"[{count}]" if isinstance(count, int) and not isinstance(count, bool) else "[ ]"
    first = _first_line(_source(cell))
    return f'cell {shown} "{first}"' if first else f"cell {shown} (the {_ordinal(number)} cell)"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def extract(nb: nbformat.NotebookNode, trusted: nbformat.NotebookNode | None) -> Extracted:
    trusted_ids = {_grade_id(c): c for c in (trusted.cells if trusted else []) if _grade_id(c)}
    out = Extracted(cells=[], student_sources=[])
    for grade_id, cell in trusted_ids.items():
        if cell.get("cell_type") == "code" and _is_setup(grade_id):
            out.cells.append(Cell(_source(cell), f"provided cell {grade_id}"))
    total = code_cells = magic_cells = 0
    for index, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        number = cell_label(cell, index)
        grade_id = _grade_id(cell)
        known = trusted_ids.get(grade_id)
        if grade_id.startswith(_SKIPPED_PREFIXES) or _is_setup(grade_id):
            if _is_setup(grade_id) and known is not None and _edited(_source(cell), _source(known)):
                out.notices.append(f"{number}: your changes to the locked set-up cell were not used (the grader "
                                   "runs its own copy): put imports in your own cell")
            continue  # checks, tests and demos never run; set-up runs from the trusted copy
        if known is not None and known.get("cell_type") == "code" and not _is_solution(known):
            if _edited(_source(cell), _source(known)):
                out.notices.append(f"{number}: your changes to this locked cell were not used (the grader runs "
                                   "its own copy): put your code in your own cell")
            continue  # another locked cell of the release: never the student's to change
        raw = _source(cell)
        if not raw.strip():
            continue
        # Input limits before any parsing: IPython's transformer and ast.parse cost far more than
        # the text's size (seconds and GiB for a few MiB).
        code_cells += 1
        if code_cells > MAX_CODE_CELLS:
            out.problems.append(f"{number}: the notebook has more than {MAX_CODE_CELLS} code cells; "
                                "the rest was not run")
            break
        if len(raw) > MAX_CELL_BYTES:
            out.problems.append(f"{number}: {len(raw) >> 10} KiB of code, more than the {MAX_CELL_BYTES >> 10} KiB "
                                "a cell may hold; the cell was not run")
            out.student_sources.append("")
            out.student_trees.append(None)
            out.student_labels.append(number)
            continue
        total += len(raw)
        if total > MAX_CODE_BYTES:
            out.problems.append(f"{number}: the notebook has more than {MAX_CODE_BYTES >> 20} MiB of code; the rest was ignored")
            break
        source = raw
        if has_ipython_syntax(raw) and magic_cells < MAX_IPYTHON_CELLS:
            magic_cells += 1
            source = to_python(raw)
        try:
            tree = ast.parse(source)
            if _too_deep(tree, MAX_NESTING):
                raise RecursionError
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            if isinstance(exc, (RecursionError, MemoryError)):
                out.problems.append(f"{number}: the code is nested more than {MAX_NESTING} levels deep; "
                                    "the cell was not run")
            else:
                line = getattr(exc, "lineno", None)
                where = f", line {line}" if line else ""
                message = " ".join(str(getattr(exc, "msg", exc)).split())[:200]
                out.problems.append(f"{number}{where}: {exc.__class__.__name__}: {message}; the cell was not run")
            out.student_sources.append("")
            out.student_trees.append(None)
            out.student_labels.append(number)
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.definitions[node.name] = node
                places = out.defined_in.setdefault(node.name, [])
                if number not in places:
                    places.append(number)
        out.student_sources.append(source)
        out.student_trees.append(tree)
        out.student_labels.append(number)
        out.cells.append(Cell(source, number))
    return out


def _edited(submitted: str, released: str) -> bool:
    """Whether a locked cell's code was changed (whitespace and outputs aside)."""
    return " ".join(submitted.split()) != " ".join(released.split())


def structural_notices(extracted: Extracted, exercises: list[registry.Exercise]) -> list[str]:
    """What the student should know about how the notebook was read: locked cells whose edits were
    discarded, graded functions defined more than once (the last definition is graded), missing
    graded functions with a near match among the names the notebook defines."""
    import difflib

    notices = list(extracted.notices)
    for exercise in exercises:
        places = extracted.defined_in.get(exercise.name, [])
        if len(places) > 1:
            notices.append(f"`{exercise.name}` is defined in {len(places)} cells ({', '.join(places)}): "
                           f"the last one, {places[-1]}, was graded")
        elif not places:
            near = difflib.get_close_matches(exercise.name, list(extracted.defined_in), n=1, cutoff=0.6)
            if near:
                notices.append(f"`{exercise.name}` is not defined, but `{near[0]}` is ({extracted.defined_in[near[0]][-1]}): "
                               f"rename it to `{exercise.name}` to have it graded")
    return notices


def signature_problem(exercise: registry.Exercise, definitions: dict[str, ast.FunctionDef]) -> str | None:
    """A one-line note when the student's def has other parameters than the contract's."""
    node = definitions.get(exercise.name)
    if node is None:
        return None
    expected = [p.split("=")[0].strip() for p in exercise.signature.split(",")]
    args = node.args
    got = [a.arg for a in (*args.posonlyargs, *args.args)]
    if got[: len(expected)] == expected and not args.vararg and len(got) == len(expected):
        return None
    if args.vararg and got == expected[: len(got)]:
        return None
    return f"`{exercise.name}({', '.join(got)})` does not match the contract `{exercise.name}({exercise.signature})`"


def graded_spans(extracted: Extracted, function: str) -> list[tuple[int, int, int]]:
    """(student cell index, first line, last line) of the module-level definitions that the graded
    ``function`` reaches by name, itself included (data only: parsed, never executed)."""
    defs: dict[str, list[tuple[int, ast.AST]]] = {}
    for index, tree in enumerate(extracted.student_trees):
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs.setdefault(node.name, []).append((index, node))
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        defs.setdefault(target.id, []).append((index, node))
    reached, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name in reached or name not in defs:
            continue
        reached.add(name)
        for _, node in defs[name]:
            todo.extend(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    spans = []
    for name in reached:
        for index, node in defs[name]:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            spans.append((index, first, node.end_lineno or node.lineno))
    return spans
