"""The course notebooks: solutions/ (nbgrader source) and assignments/ (generated, committed).

* drift: regenerating assignments/ with nbgrader reproduces the committed files exactly;
* leak: no solution, hidden test or reference code reaches assignments/;
* anatomy: grade ids, signatures, check cells and points follow the registry;
* execution: every solution notebook runs top to bottom in a fresh kernel, and every assignment
  notebook runs up to its first stub and stops there with NotImplementedError.

Parametrized over the registry's assignments; a notebook that does not exist yet is skipped.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder.frontends import release
from autograder.course.registry import BY_NAME, CHECK_PREFIX, DEMO_PREFIX, SETUP_PREFIXES, TEST_PREFIX, assignments

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted({exercise.notebook_path for exercises in assignments().values() for exercise in exercises})
SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n?", re.S)
EXECUTION_TIMEOUT_S = 300  # per cell; the demos take seconds


def _read(folder: str, notebook: str) -> nbformat.NotebookNode:
    path = ROOT / folder / notebook
    if not path.is_file():
        pytest.skip(f"{folder}/{notebook} does not exist yet")
    return nbformat.read(path, as_version=4)


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _exercises(notebook: str):
    return [exercise for exercise in BY_NAME.values() if exercise.notebook_path == notebook]


# -- drift ------------------------------------------------------------------------------------


def test_solutions_hold_the_registrys_cells():
    """Points are typed once (the registry): the check and graded cells, the graded cell's points
    and the "Autograded (N points)" lines of every solution notebook are the release's sync."""
    assert release.sync(write=False) == [], "run `make assignments`"


def test_sync_writes_points_and_missing_cells_from_the_registry():
    import dataclasses

    exercise = BY_NAME["softmax"]
    nb = _read("solutions", exercise.notebook_path)
    doubled = dataclasses.replace(exercise, tests={t: 2 * p for t, p in exercise.tests.items()})
    changes = release.sync_notebook(nb, [doubled])
    assert changes == ["softmax: 20 points in the graded cell's metadata", "softmax: 20 points in the Autograded line"]
    (test,) = [c for c in nb.cells if _grade_id(c) == TEST_PREFIX + "softmax"]
    above = nb.cells[nb.cells.index(test) - 1]
    assert test.metadata["nbgrader"]["points"] == 20 and above.source.startswith("*Autograded (20 points): values,")
    assert release.sync_notebook(nb, [doubled]) == []  # idempotent
    # an exercise written with its solution cell only gets the rest from the registry
    nb.cells = [c for c in nb.cells if _grade_id(c) not in (CHECK_PREFIX + "softmax", TEST_PREFIX + "softmax")
                and not c.source.startswith("*Autograded (20")]
    changes = release.sync_notebook(nb, [exercise])
    assert changes == ["added the check cell of softmax", "added the graded cell of softmax",
                       "added the Autograded line of softmax"]
    ids = [_grade_id(c) or c.source[:12] for c in nb.cells]
    at = ids.index("softmax")
    assert ids[at + 1:at + 5] == ["### Check yo", CHECK_PREFIX + "softmax", "*Autograded ", TEST_PREFIX + "softmax"]
    nbformat.validate(nb)
    assert release.sync_notebook(nb, [exercise]) == []


@pytest.mark.slow
def test_assignments_are_exactly_what_nbgrader_generates():
    expected = release.build()
    if not expected:
        pytest.skip("no solution notebooks yet")
    drift = release.compare(expected, release.current())
    assert not drift, "assignments/ drifted from solutions/ (run `make assignments`):\n" + "\n".join(map(str, drift))


def test_assignments_hold_only_notebooks_and_the_solutions_data_files():
    """Besides notebooks, only the data files of solutions/ (a demo's text), copied unchanged."""
    stray = []
    for path in (ROOT / "assignments").rglob("*"):
        if path.is_file() and path.suffix != ".ipynb":
            source = ROOT / "solutions" / path.relative_to(ROOT / "assignments")
            if not source.is_file() or source.read_bytes() != path.read_bytes():
                stray.append(path.relative_to(ROOT).as_posix())
    assert not stray


# -- leaks ------------------------------------------------------------------------------------


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body:
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _code_lines(source: str) -> set[str]:
    """Significant lines of code, formatted canonically (comments and docstrings dropped), so that
    layout differences cannot hide a copy."""
    source = textwrap.dedent("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    try:
        text = ast.unparse(_strip_docstrings(ast.parse(source)))
    except SyntaxError:
        text = source
    lines = {line.strip() for line in text.splitlines()}
    trivial = ("def ", "class ", "import ", "from ", "return None", "pass", "else:", "try:", "#", "@")
    return {line for line in lines if len(line) >= 16 and not line.startswith(trivial)}


def _solution_notebooks() -> dict[str, nbformat.NotebookNode]:
    return {nb: nbformat.read(ROOT / "solutions" / nb, as_version=4) for nb in NOTEBOOKS if (ROOT / "solutions" / nb).is_file()}


def _public_lines(solutions: dict[str, nbformat.NotebookNode]) -> set[str]:
    """Lines that solutions/ shows outside solution regions: those are meant to be public."""
    lines: set[str] = set()
    for nb in solutions.values():
        for cell in nb.cells:
            if cell.cell_type == "code":
                lines |= _code_lines(SOLUTION.sub("", HIDDEN.sub("", cell.source)))
    return lines


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_solution_or_hidden_test_reaches_students(notebook):
    nb = _read("assignments", notebook)
    for cell in nb.cells:
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "hidden_tests_run_by_the_grader"):
            assert marker not in cell.source, f"{notebook}: cell {_grade_id(cell) or cell.get('id')} contains {marker!r}"
    solutions = _solution_notebooks()
    public = _public_lines(solutions)
    secret = set()
    for source_nb in solutions.values():
        for cell in source_nb.cells:
            for body in SOLUTION.findall(cell.source):
                secret |= _code_lines(body) - public
    released = set().union(*(_code_lines(cell.source) for cell in nb.cells if cell.cell_type == "code"))
    assert not secret & released, f"{notebook}: solution code in the student version: {sorted(secret & released)}"


def _reference_statements() -> dict[str, set[str]]:
    """Exercise name -> the statements of its reference function (block headers such as
    `with torch.no_grad():` say nothing about a solution and are left out). Helpers that the
    notebooks provide on purpose (`init_adam_states`) are not exercises and are not included."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "reference").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name in BY_NAME:
                body = "\n".join(ast.unparse(_strip_docstrings(statement)) for statement in node.body)
                out[node.name] = {line for line in _code_lines(body) if not line.endswith(":")}
    return out


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_reference_code_reaches_students(notebook):
    nb = _read("assignments", notebook)
    released = set().union(*(_code_lines(cell.source) for cell in nb.cells if cell.cell_type == "code"))
    for name, statements in _reference_statements().items():
        assert not statements & released, f"{notebook}: code of reference.{name} in the student version: {sorted(statements & released)}"


def test_leak_detector_sees_a_copied_body():
    """The canonical form catches a solution pasted with other layout and comments."""
    body = "X_exp = torch.exp(X - X.amax(dim=-1, keepdim=True))\nreturn X_exp / X_exp.sum(dim=-1, keepdim=True)\n"
    pasted = "def f(X):\n    # copied\n    X_exp = torch.exp( X-X.amax(dim = -1, keepdim=True) )\n    return X_exp/X_exp.sum(dim=-1, keepdim=True)"
    assert _code_lines(body) and _code_lines(body) <= _code_lines(pasted)


# -- anatomy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("folder", ["solutions", "assignments"])
def test_cells_follow_the_registry(folder, notebook):
    nb = _read(folder, notebook)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    cells = {_grade_id(cell): cell for cell in nb.cells if _grade_id(cell)}
    code_ids = [_grade_id(cell) for cell in nb.cells if cell.cell_type == "code"]
    assert code_ids and code_ids[0] == "setup", f"{folder}/{notebook}: the first code cell must be `setup`"
    assert len(set(filter(None, code_ids))) == len([i for i in code_ids if i]), f"{folder}/{notebook}: duplicate grade ids"
    for exercise in _exercises(notebook):
        name = exercise.name
        solution, check, test = cells.get(name), cells.get(CHECK_PREFIX + name), cells.get(TEST_PREFIX + name)
        assert solution is not None and check is not None and test is not None, f"{folder}/{notebook}: cells of {name} missing"
        meta = solution.metadata["nbgrader"]
        assert meta["solution"] is True and meta["grade"] is False and not meta.get("locked", False)
        assert f"def {name}({exercise.signature}):" in solution.source, f"{folder}/{notebook}: `{name}` must be defined with the registry's signature"
        if folder == "solutions":
            assert "### BEGIN SOLUTION" in solution.source and "### END SOLUTION" in solution.source
        else:
            assert "raise NotImplementedError()" in solution.source
        assert check.metadata["nbgrader"]["locked"] is True and check.metadata["nbgrader"]["grade"] is False
        assert re.search(rf"^check\({name}\)$", check.source, re.M), f"{folder}/{notebook}: check cell must call check({name})"
        test_meta = test.metadata["nbgrader"]
        assert test_meta["grade"] is True and test_meta["locked"] is True and test_meta["solution"] is False
        assert test_meta["points"] == exercise.points, f"{folder}/{notebook}: test_{name} points differ from the registry"
        assert re.search(rf"^check\({name}\)$", test.source, re.M)
    # Every nbgrader cell is one of the anatomy's kinds, and only exercise cells are editable.
    names = {exercise.name for exercise in _exercises(notebook)}
    for grade_id, cell in cells.items():
        kinds = (*SETUP_PREFIXES, CHECK_PREFIX, TEST_PREFIX, DEMO_PREFIX)
        assert grade_id in names or grade_id.startswith(kinds) or cell.cell_type == "markdown", f"{folder}/{notebook}: unexpected cell {grade_id}"
        if grade_id not in names and cell.cell_type == "code":
            assert cell.metadata["nbgrader"]["locked"] is True, f"{folder}/{notebook}: {grade_id} must be locked"
        if grade_id.startswith(TEST_PREFIX):
            assert grade_id[len(TEST_PREFIX):] in names, f"{folder}/{notebook}: {grade_id} grades no exercise of this notebook"


# -- execution --------------------------------------------------------------------------------


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A `python3` kernelspec running this interpreter (the venv), whatever the user's Jupyter
    set-up; one thread per kernel (tiny tensors: threads only add contention on CI's 2 cores)."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3 (course venv)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def _execute(nb: nbformat.NotebookNode, folder: Path) -> None:
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=EXECUTION_TIMEOUT_S,
        kernel_name="python3",
        allow_errors=False,
        shutdown_kernel="immediate",  # a graceful shutdown waits seconds for nothing
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_solution_notebook_runs_top_to_bottom(notebook, kernel_env):
    nb = _read("solutions", notebook)
    _execute(nb, (ROOT / "solutions" / notebook).parent)
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    for exercise in _exercises(notebook):
        for case in exercise.public_cases:
            assert f"✓ {exercise.name}: {case.description}" in outputs


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_assignment_notebook_stops_at_its_first_stub(notebook, kernel_env):
    from nbclient.exceptions import CellExecutionError

    nb = _read("assignments", notebook)
    first_stub = next(_grade_id(cell) for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("solution"))
    with pytest.raises(CellExecutionError) as failure:
        _execute(nb, (ROOT / "assignments" / notebook).parent)
    assert failure.value.ename == "NotImplementedError", failure.value
    failed = [cell for cell in nb.cells if cell.cell_type == "code" and any(o.output_type == "error" for o in cell.outputs)]
    assert len(failed) == 1
    position = {id(cell): i for i, cell in enumerate(nb.cells)}
    stub_position = next(i for i, cell in enumerate(nb.cells) if _grade_id(cell) == first_stub)
    assert position[id(failed[0])] > stub_position, "the error must come from calling the stub, after its definition"
    traceback = "\n".join(next(o for o in failed[0].outputs if o.output_type == "error").traceback)
    frames = re.findall(r", in (\w+)\(", re.sub(r"\x1b\[[0-9;]*m", "", traceback))  # IPython: "Cell In[2], line 13, in corr2d(X, K)"
    assert frames and frames[-1] == first_stub, f"NotImplementedError raised in {frames[-1:]}, not by the stub {first_stub}:\n{traceback}"


# -- the release pipeline's own stages (no nbgrader run) ----------------------------------------


def test_normalise_drops_outputs_counts_and_timings():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=3, outputs=[nbformat.v4.new_output("stream", text="1\n")])
    cell.metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00Z"}
    nb.cells = [cell]
    text = release.normalise(nbformat.writes(nb))
    again = nbformat.reads(text, as_version=4).cells[0]
    assert again.outputs == [] and again.execution_count is None and "execution" not in again.metadata
    assert text.endswith("\n") and release.normalise(text) == text


def test_write_makes_assignments_exactly_the_generated_tree(tmp_path):
    (tmp_path / "assignments" / "old").mkdir(parents=True)
    (tmp_path / "assignments" / "old" / "stale.ipynb").write_text("{}")
    (tmp_path / "assignments" / "a").mkdir()
    (tmp_path / "assignments" / "a" / "nb.ipynb").write_text("old\n")
    (tmp_path / "assignments" / "a" / "data.csv").write_text("x\n")
    expected = {"a/nb.ipynb": "new\n", "b/other.ipynb": "b\n"}
    drift = {(d.path, d.problem.split()[0]) for d in release.compare(expected, release.current(tmp_path))}
    assert drift == {("a/nb.ipynb", "differs"), ("b/other.ipynb", "missing"), ("a/data.csv", "stale"), ("old/stale.ipynb", "stale")}
    release.write(expected, tmp_path)
    assert release.current(tmp_path) == expected
    assert not (tmp_path / "assignments" / "old").exists()


def test_check_reports_drift_with_exit_status_1(tmp_path, monkeypatch, capsys):
    (tmp_path / "assignments" / "a").mkdir(parents=True)
    (tmp_path / "assignments" / "a" / "nb.ipynb").write_text("line\nedited\n")
    monkeypatch.setattr(release, "build", lambda root, only: {"a/nb.ipynb": "line\ngenerated\n"})
    assert release.main(["--check"], root=tmp_path) == 1
    out = capsys.readouterr().out
    assert "assignments/a/nb.ipynb: differs" in out and "-edited" in out and "+generated" in out
    assert release.main([], root=tmp_path) == 0
    assert release.main(["--check"], root=tmp_path) == 0
