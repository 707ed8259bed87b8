"""nbgrader end to end, scored by the sandboxed engine (autograder/frontends/nbgrader_plugin.py).

The fast tests check the wiring in nbgrader_config.py and each plugin piece in this process, with
a hand-built gradebook. The slow ones build a scratch course from this repository (its config,
solutions, ``autograder`` and ``reference`` packages), release 01_linear_models and 04_rnn with
``nbgrader generate_assignment``, drop in a small class of submissions (perfect, partial,
cheating, crashing and hanging, tampering and noisy on stderr), run the real ``nbgrader autograde``,
``generate_feedback`` and ``export`` against a real SQLite gradebook, and compare the gradebook,
the feedback HTML and the CSV with ``python -m autograder grade`` on the same notebooks (same seed).
"""

from __future__ import annotations

import copy
import csv
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nbformat.notebooknode import from_dict
from traitlets.config.loader import PyFileConfigLoader
from traitlets.utils.importstring import import_item

from autograder.frontends import nbgrader_plugin as plugin
from autograder.course import registry
from autograder.report.cell_feedback import feedback_text
from autograder.report.results import ExerciseResult, NotebookResult
from autograder.report.results import TestResult as Outcome  # aliased: pytest would collect a Test* name

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtual environment's bin/: nbgrader, alembic
SEED = 20240517
ASSIGNMENTS = ("01_linear_models", "04_rnn")
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's own, harmless

HIDDEN_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "hidden_tests_run_by_the_grader")


@pytest.fixture(scope="module", autouse=True)
def _alembic_on_path() -> Any:
    # nbgrader's Gradebook runs the `alembic` command it installs: the environment's bin/ must be on PATH.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        yield


# ============================================================================ fast: the wiring
def _config() -> Any:
    loader = PyFileConfigLoader("nbgrader_config.py", path=str(REPO))
    return loader.load_config()


def test_config_replaces_kernel_execution_with_the_engine() -> None:
    from nbconvert.preprocessors import ExecutePreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, SaveAutoGrades

    config = _config()
    sanitize = [import_item(p) for p in config.Autograde.sanitize_preprocessors]
    autograde = [import_item(p) for p in config.Autograde.autograde_preprocessors]
    feedback = [import_item(p) for p in config.GenerateFeedback.preprocessors]
    # No kernel anywhere on the autograde path: nothing executes notebooks but the engine.
    assert not any(issubclass(p, ExecutePreprocessor) for p in sanitize + autograde)
    assert sanitize[0] is plugin.RestoreCellMetadata
    assert autograde[0] is plugin.GradeWithEngine
    # Scores are saved by the engine-aware subclass, never by nbgrader's output-based one.
    savers = [p for p in autograde if issubclass(p, SaveAutoGrades)]
    assert savers == [plugin.SaveEngineGrades]
    assert autograde.index(plugin.GradeWithEngine) < autograde.index(plugin.SaveEngineGrades)
    assert feedback[0] is plugin.HideHiddenTests and not any(issubclass(p, ClearHiddenTests) for p in feedback)
    assert import_item(config.ExportApp.plugin_class) is plugin.ExerciseCsvExportPlugin
    assert config.CourseDirectory.root == str(REPO)


def test_config_never_imports_the_plugin() -> None:
    # traitlets ignores a config file that raises, and nbgrader would then execute notebooks in a
    # kernel: the config names the classes as strings, so a broken package fails closed instead.
    source = (REPO / "nbgrader_config.py").read_text(encoding="utf-8")
    assert "import autograder" not in source and "from autograder" not in source


# ========================================================================= fast: plugin pieces
def test_strip_hidden_tests() -> None:
    source = "a = 1\n### BEGIN HIDDEN TESTS\nsecret()\n### END HIDDEN TESTS\nb = 2"
    assert plugin.strip_hidden_tests(source) == "a = 1\nb = 2"
    assert plugin.strip_hidden_tests("x\n### BEGIN HIDDEN TESTS\nsecret()") == "x"  # unterminated
    assert plugin.strip_hidden_tests("nothing hidden") == "nothing hidden"


def test_exercise_for_cell_uses_the_registry() -> None:
    for exercise in registry.EXERCISES:
        assert plugin.exercise_for_cell(f"test_{exercise.name}") == exercise.name
    assert plugin.exercise_for_cell("test_bonus") is None
    assert plugin.exercise_for_cell("softmax") is None


def _result() -> NotebookResult:
    return NotebookResult(
        notebook="linear_models.ipynb", assignment="01_linear_models", errors=["cell 9: RuntimeError: \x1b[31mboom"],
        exercises=[
            ExerciseResult("softmax", 7, 10, "partial", [
                Outcome("test_values", True, 7, 7, ""),
                Outcome("test_stability", False, 0, 3, "Tensor-likes are not close!\nGreatest absolute difference: nan"),
            ]),
            ExerciseResult("cross_entropy", 0, 10, "timeout", [], message="`cross_entropy` did not finish within 20 s"),
        ])


def test_cell_score_is_the_engines_and_scales_only_on_a_points_mismatch() -> None:
    assert plugin.cell_score(7, 10, 10) == 7
    assert plugin.cell_score(7, 10, 20) == 14
    assert plugin.cell_score(12, 10, 10) == 10 and plugin.cell_score(-1, 10, 10) == 0


def _gradebook(tmp_path: Path) -> str:
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_assignment("01_linear_models")
        gb.add_notebook("linear_models", "01_linear_models")
        for name in ("softmax", "cross_entropy"):
            gb.add_grade_cell(f"test_{name}", "linear_models", "01_linear_models", max_score=10, cell_type="code")
        gb.add_grade_cell("test_extra", "linear_models", "01_linear_models", max_score=5, cell_type="code")
        for name in ("alice", "bob"):
            gb.add_student(name, first_name=name.title(), last_name="O'Neil, Jr.")
        gb.add_submission("01_linear_models", "alice")
    return url


def _grade(url: str, cell: str, student: str = "alice") -> Any:
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        grade = gb.find_grade(cell, "linear_models", "01_linear_models", student)
        return grade.auto_score, grade.manual_score, grade.needs_manual_grade, grade.score


def _test_cell(grade_id: str, points: float) -> Any:
    return from_dict({"cell_type": "code", "execution_count": None, "outputs": [], "source": "check()",
                      "metadata": {"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True,
                                                "points": points, "solution": False, "schema_version": 3}}})


def test_save_engine_grades_records_partial_credit_and_flags_uncovered_cells(tmp_path: Path) -> None:
    url = _gradebook(tmp_path)
    nb = from_dict({"cells": [_test_cell("test_softmax", 10), _test_cell("test_extra", 5)], "metadata": {},
                    "nbformat": 4, "nbformat_minor": 5})  # test_cross_entropy's cell is missing
    resources = {"nbgrader": {"notebook": "linear_models", "assignment": "01_linear_models", "student": "alice",
                              "db_url": url},
                 plugin.RESULTS_KEY: {"scores": {"test_softmax": {"score": 7.0, "max_score": 10.0},
                                                 "test_cross_entropy": {"score": 2.5, "max_score": 10.0}}}}
    # Outputs a student could have forged count for nothing: the score comes from resources.
    nb.cells[0].outputs = [from_dict({"output_type": "execute_result", "execution_count": 1, "metadata": {},
                                      "data": {"text/plain": "10"}})]
    plugin.SaveEngineGrades().preprocess(nb, resources)
    assert _grade(url, "test_softmax") == (7.0, None, False, 7.0)
    assert _grade(url, "test_cross_entropy") == (2.5, None, False, 2.5)
    auto, _, needs_manual, _ = _grade(url, "test_extra")
    assert auto is None and needs_manual  # never full credit for a cell the engine did not grade


def test_save_engine_grades_refuses_without_the_engine(tmp_path: Path) -> None:
    url = _gradebook(tmp_path)
    nb = from_dict({"cells": [_test_cell("test_softmax", 10)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    resources = {"nbgrader": {"notebook": "linear_models", "assignment": "01_linear_models", "student": "alice",
                              "db_url": url}}
    with pytest.raises(plugin.GradingRefused):
        plugin.SaveEngineGrades().preprocess(nb, resources)


def test_export_adds_a_column_per_exercise(tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    url = _gradebook(tmp_path)
    with Gradebook(url) as gb:
        for cell, score in (("test_softmax", 7.0), ("test_cross_entropy", 10.0), ("test_extra", 1.0)):
            gb.find_grade(cell, "linear_models", "01_linear_models", "alice").auto_score = score
        gb.find_grade("test_extra", "linear_models", "01_linear_models", "alice").manual_score = 4.0  # formgrader
        gb.db.commit()
        dest = tmp_path / "grades.csv"
        plugin.ExerciseCsvExportPlugin(to=str(dest)).export(gb)
    rows = list(csv.DictReader(dest.open(newline="", encoding="utf-8")))
    assert list(rows[0])[-3:] == ["softmax", "cross_entropy", "test_extra"]
    by_student = {row["student_id"]: row for row in rows}
    alice, bob = by_student["alice"], by_student["bob"]
    assert (alice["softmax"], alice["cross_entropy"], alice["test_extra"]) == ("7.0", "10.0", "4.0")
    assert float(alice["score"]) == 21.0 and float(alice["max_score"]) == 25.0
    assert alice["last_name"] == "O'Neil, Jr."  # quoted, not split
    assert (bob["softmax"], bob["cross_entropy"], bob["score"]) == ("0.0", "0.0", "0.0")  # nothing submitted


def test_grade_with_engine_writes_feedback_and_strips_hidden_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autograder.grading import engine
    from autograder.submission import notebook as nbio

    calls = []

    def fake_grade_notebook(path: Any, **kwargs: Any) -> NotebookResult:
        calls.append((path.name, json.loads(path.data.decode("utf-8")), kwargs))  # graded from bytes, no file
        return _result()

    monkeypatch.setattr(engine, "grade_notebook", fake_grade_notebook)
    (tmp_path / "01_linear_models").mkdir()
    (tmp_path / "01_linear_models" / "linear_models.ipynb").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(nbio, "RELEASE_DIR", tmp_path)
    cell = _test_cell("test_softmax", 10)
    cell.source = "check(softmax)\n### BEGIN HIDDEN TESTS\nhidden_tests_run_by_the_grader('softmax')\n### END HIDDEN TESTS"
    nb = from_dict({"cells": [cell, _test_cell("test_cross_entropy", 10)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    resources = {"nbgrader": {"notebook": "linear_models", "assignment": "01_linear_models", "student": "alice"}}
    grader = plugin.GradeWithEngine(seed=5)
    nb, resources = grader.preprocess(nb, resources)
    assert [(name, kw) for name, _, kw in calls] == [
        ("linear_models.ipynb", {"device": "cpu", "sandbox": True, "assignment": "01_linear_models", "seed": 5, "slot": 0})]
    assert resources[plugin.RESULTS_KEY]["scores"] == {"test_softmax": {"score": 7.0, "max_score": 10.0},
                                                       "test_cross_entropy": {"score": 0.0, "max_score": 10.0}}
    assert nb.cells[0].source == "check(softmax)"
    stdout, score = nb.cells[0].outputs
    assert stdout.name == "stdout" and stdout.text == feedback_text(_result().exercises[0], _result().errors)
    assert stdout.text.startswith("softmax: 7 / 10 points (partial)")
    assert nb.cells[1].outputs[0].text == feedback_text(_result().exercises[1], _result().errors)
    assert score.output_type == "execute_result" and score.data["text/plain"] == "7"
    assert nb.metadata[plugin.RESULTS_KEY]["result"]["exercises"][1]["status"] == "timeout"


def test_grade_with_engine_refuses_notebooks_the_registry_does_not_know() -> None:
    nb = from_dict({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    resources = {"nbgrader": {"notebook": "homework", "assignment": "ps1", "student": "alice"}}
    with pytest.raises(plugin.GradingRefused, match="refusing to grade"):
        plugin.GradeWithEngine().preprocess(nb, resources)


# ====================================================================== slow: the real course
def _sandbox_reason() -> str | None:
    try:
        from autograder.sandbox import bubblewrap as sandbox
    except Exception as error:  # noqa: BLE001
        return f"autograder.sandbox cannot be imported: {error}"
    return sandbox.unavailable_reason()


def _env(path: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = path or f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(course: Path, *args: Any, path: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=course, env=_env(path), capture_output=True, text=True,
                          timeout=timeout)


def _nbgrader(course: Path, *args: str) -> str:
    done = _run(course, BIN / "nbgrader", *args)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{log[-6000:]}"
    return log


def _grade_id(cell: dict) -> str | None:
    nbg = cell.get("metadata", {}).get("nbgrader")
    return nbg.get("grade_id") if isinstance(nbg, dict) else None


def _index(nb: dict, grade_id: str) -> int:
    return next(i for i, cell in enumerate(nb["cells"]) if _grade_id(cell) == grade_id)


def _code(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": os.urandom(4).hex(), "metadata": {}, "outputs": [],
            "source": source}


class Course:
    """The scratch course and what grading it produced."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs: dict[str, str] = {}
        self.cli: dict[tuple[str, str], dict] = {}  # (student, assignment) -> `autograder grade` JSON
        self.without_sandbox: dict[str, Any] = {}  # what an autograde run with no sandbox left behind

    def release(self, assignment: str) -> dict:
        name = registry.assignments()[assignment][0].notebook
        return json.loads((self.root / "assignments" / assignment / name).read_text(encoding="utf-8"))

    def solution_sources(self, assignment: str) -> dict[str, str]:
        name = registry.assignments()[assignment][0].notebook
        nb = json.loads((self.root / "solutions" / assignment / name).read_text(encoding="utf-8"))
        return {_grade_id(c): "".join(c["source"]) for c in nb["cells"] if _grade_id(c)}

    def submission(self, assignment: str, **sources: str) -> dict:
        """The release with the named solution cells filled in (the others keep their stubs)."""
        nb = self.release(assignment)
        for cell in nb["cells"]:
            if _grade_id(cell) in sources:
                cell["source"] = sources[_grade_id(cell)]
        return nb

    def perfect(self, assignment: str) -> dict:
        solutions = self.solution_sources(assignment)
        return self.submission(assignment, **{e.name: solutions[e.name] for e in registry.assignments()[assignment]})

    def submit(self, student: str, assignment: str, nb: dict) -> Path:
        folder = self.root / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / registry.assignments()[assignment][0].notebook
        path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
        return path

    def path(self, kind: str, student: str, assignment: str, suffix: str = ".ipynb") -> Path:
        stem = Path(registry.assignments()[assignment][0].notebook).stem
        return self.root / kind / student / assignment / f"{stem}{suffix}"

    def grade(self, student: str, assignment: str, cell: str) -> Any:
        from nbgrader.api import Gradebook

        stem = Path(registry.assignments()[assignment][0].notebook).stem
        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            grade = gb.find_grade(cell, stem, assignment, student)
            return {"auto_score": grade.auto_score, "max_score": grade.max_score, "score": grade.score,
                    "needs_manual_grade": grade.needs_manual_grade}

    def graded_result(self, student: str, assignment: str) -> dict:
        """The engine result nbgrader's run stored in the autograded notebook."""
        nb = json.loads(self.path("autograded", student, assignment).read_text(encoding="utf-8"))
        return nb["metadata"][plugin.RESULTS_KEY]["result"]


MARKER = "leaked-by-a-student"


def _spy_cell(course: Path) -> str:
    # Tries to read what the grader must keep from students and to leave a trace outside the
    # sandbox; its exception message says what happened, and the engine reports it.
    targets = [course / "gradebook.db", course / "solutions" / "01_linear_models" / "linear_models.ipynb",
               course / "reference" / "__init__.py",
               course / "submitted" / "perfect" / "01_linear_models" / "linear_models.ipynb"]
    return f"""
import os
leaked = []
for target in {[str(t) for t in targets]!r}:
    try:
        with open(target, "rb") as handle:
            handle.read(16)
        leaked.append(target)
    except OSError:
        pass
for folder in ({str(course)!r}, "/tmp", os.path.expanduser("~")):
    try:
        with open(os.path.join(folder, {MARKER!r}), "w") as handle:
            handle.write("student code ran outside the sandbox")
    except OSError:
        pass
raise RuntimeError(("LEAKED " + " ".join(leaked)) if leaked else "SPY-FOUND-NOTHING")
"""


# Replaces the comparisons a grader running in the student's kernel would rely on.
MONKEYPATCH_CELL = """
import torch, torch.testing
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
torch.Tensor.allclose = lambda *args, **kwargs: True
"""
NAIVE_SOFTMAX = """
def softmax(X):
    E = torch.exp(X)  # not stabilised: overflows for large scores
    return E / E.sum(dim=-1, keepdim=True)
"""
WRONG_SOFTMAX = "def softmax(X):\n    return torch.ones_like(X) / X.shape[-1]\n"
WRONG_CROSS_ENTROPY = "def cross_entropy(y_hat, y):\n    return torch.zeros(y_hat.shape[0], dtype=y_hat.dtype)\n"
CRASHING_SOFTMAX = "def softmax(X):\n    import os\n    os._exit(3)\n"
HANGING_CROSS_ENTROPY = "def cross_entropy(y_hat, y):\n    while True:\n        pass\n"
NOISE_CELL = """
import sys, warnings
print("a warning on stderr while loading", file=sys.stderr)
warnings.warn("deprecated something (stderr)")
"""


def _noisy(source: str, name: str) -> str:
    """The same function, printing to stderr and warning on every call (inserted right after the
    signature line, which stays valid Python whatever follows)."""
    lines = source.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    assert lines[at].rstrip().endswith(":"), "a one-line signature"
    body = ["    import sys, warnings", "    print('noise on stderr', file=sys.stderr)",
            f"    warnings.warn('a warning from {name}')"]
    return "\n".join(lines[: at + 1] + body + lines[at + 1:])


def _tampered(course: Course) -> dict:
    """Correct code (noisy on stderr), in a notebook whose cells and metadata were tampered with."""
    solutions = course.solution_sources("01_linear_models")
    nb = course.submission("01_linear_models", **{e.name: _noisy(solutions[e.name], e.name)
                                                  for e in registry.assignments()["01_linear_models"]})
    cells = nb["cells"]
    cells.insert(1, _code(NOISE_CELL))
    # the softmax test cell edited and its points raised
    i = _index(nb, "test_softmax")
    cells[i]["source"] = "print('all tests passed')"
    cells[i]["metadata"]["nbgrader"]["points"] = 100
    # the cross_entropy test cell deleted
    del cells[_index(nb, "test_cross_entropy")]
    # the softmax solution cell duplicated, and marked as a grade cell worth 50 points
    i = _index(nb, "softmax")
    duplicate = copy.deepcopy(cells[i])
    duplicate["id"] = "duplicate-softmax"
    cells.insert(i + 1, duplicate)
    cells[i]["metadata"]["nbgrader"].update(grade=True, points=50)
    # metadata nbgrader would reject, aborting the whole batch: an old schema, garbage
    cells[_index(nb, "setup")]["metadata"]["nbgrader"]["schema_version"] = 1
    cells[_index(nb, "check_softmax")]["metadata"]["nbgrader"] = "garbage"
    # a bonus grade cell the release does not have
    bonus = _code("print('bonus')")
    bonus["metadata"] = {"nbgrader": {"grade": True, "grade_id": "test_bonus", "locked": True, "points": 100,
                                      "solution": False, "schema_version": 3}}
    cells.append(bonus)
    return nb


def _auto_score_or_none(course: Course, student: str, assignment: str, cell: str) -> float | None:
    from nbgrader.api import MissingEntry

    try:
        return course.grade(student, assignment, cell)["auto_score"]
    except MissingEntry:
        return None


#: assignment -> student ids. nbgrader grades a class in alphabetical order, so `crashing` is
#: followed by `partial` and `perfect`; `tampering` is autograded afterwards with --student.
STUDENTS = {
    "01_linear_models": ("cheating", "crashing", "partial", "perfect", "tampering"),
    "04_rnn": ("perfect",),
}


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Course:
    reason = _sandbox_reason()
    if reason:
        pytest.skip(f"official grading needs the sandbox: {reason}")
    missing = [a for a in ASSIGNMENTS if not (REPO / "solutions" / a).is_dir()]
    assert not missing, f"solutions/ lacks {missing}"
    root = tmp_path_factory.mktemp("course")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copy(REPO / "nbgrader_config.py", root)
    for package in ("autograder", "reference"):
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    for assignment in ASSIGNMENTS:
        shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment, ignore=ignore)
    course = Course(root)

    for assignment in ASSIGNMENTS:
        course.logs[f"generate {assignment}"] = _nbgrader(root, "generate_assignment", assignment)

    course.submit("perfect", "01_linear_models", course.perfect("01_linear_models"))
    course.submit("perfect", "04_rnn", course.perfect("04_rnn"))
    course.submit("partial", "01_linear_models", course.submission("01_linear_models", softmax=NAIVE_SOFTMAX))
    cheating = course.submission("01_linear_models", softmax=WRONG_SOFTMAX, cross_entropy=WRONG_CROSS_ENTROPY)
    cheating["cells"][1:1] = [_code(MONKEYPATCH_CELL), _code(_spy_cell(root))]
    cheating["cells"] += [_code(MONKEYPATCH_CELL), _code("import os\nos._exit(0)\n")]
    course.submit("cheating", "01_linear_models", cheating)
    course.submit("crashing", "01_linear_models",
                  course.submission("01_linear_models", softmax=CRASHING_SOFTMAX, cross_entropy=HANGING_CROSS_ENTROPY))
    late = course.submit("tampering", "01_linear_models", _tampered(course))
    late.rename(late.with_suffix(".later"))  # arrives after the class was autograded

    # Fail closed: where bubblewrap cannot be found, autograde grades nothing and says why.
    if shutil.which("bwrap", path=str(BIN)) is None:
        done = _run(root, BIN / "nbgrader", "autograde", "04_rnn", path=str(BIN))
        course.without_sandbox = {"returncode": done.returncode, "log": done.stdout + done.stderr,
                                  "autograded": course.path("autograded", "perfect", "04_rnn").exists(),
                                  "auto_score": _auto_score_or_none(course, "perfect", "04_rnn", "test_clip_grad")}

    seed = f"--GradeWithEngine.seed={SEED}"
    for assignment in ASSIGNMENTS:
        course.logs[f"autograde {assignment}"] = _nbgrader(root, "autograde", assignment, seed)
    late.with_suffix(".later").rename(late)
    course.logs["autograde --student"] = _nbgrader(root, "autograde", "01_linear_models", "--student", "tampering", seed)
    for assignment in ASSIGNMENTS:
        course.logs[f"feedback {assignment}"] = _nbgrader(root, "generate_feedback", assignment)
    course.logs["export"] = _nbgrader(root, "export", "--to", "grades.csv")

    # The engine's own command line on the very same submitted notebooks, with the same seed.
    for assignment, students in STUDENTS.items():
        for student in students:
            notebook = course.path("submitted", student, assignment)
            done = _run(root, sys.executable, "-m", "autograder", "grade", notebook, "--format", "json",
                        "--seed", str(SEED), "--assignment", assignment)
            assert done.returncode == 0, done.stderr[-3000:]
            course.cli[(student, assignment)] = json.loads(done.stdout)
    return course


def _scores(result: dict) -> dict[str, tuple[float, str]]:
    return {e["name"]: (e["score"], e["status"]) for e in result["exercises"]}


slow = pytest.mark.slow
EVERY_SUBMISSION = [(a, s) for a, students in STUDENTS.items() for s in students]


@slow
@pytest.mark.parametrize("assignment, student", EVERY_SUBMISSION)
def test_gradebook_scores_are_the_engines(course: Course, assignment: str, student: str) -> None:
    from autograder.report import flags

    cli = course.cli[(student, assignment)]
    assert cli["official"] is True
    found = flags.from_result(NotebookResult.from_json(course.graded_result(student, assignment)))
    first = registry.assignments()[assignment][0].name
    flagged = {f.exercise or first for f in found}  # notebook-level flags go to the first exercise
    for exercise in registry.assignments()[assignment]:
        engine = next(e for e in cli["exercises"] if e["name"] == exercise.name)
        grade = course.grade(student, assignment, f"test_{exercise.name}")
        assert grade["max_score"] == exercise.points
        assert grade["auto_score"] == engine["score"], (exercise.name, engine)
        # forbidden, timed out, grader error, for review: left for the instructor to confirm
        assert grade["needs_manual_grade"] is (exercise.name in flagged), (exercise.name, found)
    # the result nbgrader's run graded with is the command line's, exercise by exercise
    assert _scores(course.graded_result(student, assignment)) == _scores(cli)


@slow
def test_perfect_and_tampering_students_get_full_marks(course: Course) -> None:
    for student, assignment in (("perfect", "01_linear_models"), ("perfect", "04_rnn"), ("tampering", "01_linear_models")):
        for exercise in registry.assignments()[assignment]:
            grade = course.grade(student, assignment, f"test_{exercise.name}")
            assert grade["auto_score"] == exercise.points, (student, exercise.name)


@slow
def test_tampering_changes_nothing_in_the_gradebook(course: Course) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gb:
        tampering = gb.find_submission_notebook("linear_models", "01_linear_models", "tampering")
        perfect = gb.find_submission_notebook("linear_models", "01_linear_models", "perfect")
        assert tampering.max_score == perfect.max_score == sum(e.points for e in registry.assignments()["01_linear_models"])
        assert tampering.score == perfect.score == tampering.max_score
        with pytest.raises(MissingEntry):
            gb.find_grade("test_bonus", "linear_models", "01_linear_models", "tampering")
    nb = json.loads(course.path("autograded", "tampering", "01_linear_models").read_text(encoding="utf-8"))
    grade_cells = [_grade_id(c) for c in nb["cells"] if isinstance(c["metadata"].get("nbgrader"), dict)
                   and c["metadata"]["nbgrader"].get("grade")]
    assert sorted(grade_cells) == sorted(f"test_{e.name}" for e in registry.assignments()["01_linear_models"])
    restored = nb["cells"][_index(nb, "test_softmax")]
    assert "all tests passed" not in "".join(restored["source"])
    # --student graded this one student only
    log = course.logs["autograde --student"]
    assert "tampering" in log and not any(f"'{s}'" in log for s in STUDENTS["01_linear_models"] if s != "tampering")


@slow
def test_without_a_sandbox_autograde_fails_closed(course: Course) -> None:
    if not course.without_sandbox:
        pytest.skip("bwrap is in the virtual environment's bin/: cannot hide it")
    assert course.without_sandbox["returncode"] != 0
    assert "the sandbox is unavailable" in course.without_sandbox["log"]
    assert course.without_sandbox["autograded"] is False
    assert course.without_sandbox["auto_score"] is None  # no score, in particular no full credit


@slow
def test_partial_credit(course: Course) -> None:
    softmax = course.grade("partial", "01_linear_models", "test_softmax")
    assert 0 < softmax["auto_score"] < registry.BY_NAME["softmax"].points
    assert course.grade("partial", "01_linear_models", "test_cross_entropy")["auto_score"] == 0  # the stub


@slow
def test_cheating_does_not_pay_and_student_code_stays_in_the_sandbox(course: Course) -> None:
    exercises = registry.assignments()["01_linear_models"]
    total = sum(course.grade("cheating", "01_linear_models", f"test_{e.name}")["auto_score"] for e in exercises)
    assert total < sum(e.points for e in exercises) / 2
    # os._exit(0) in the last cell did not discard the submission: it was graded like any other
    assert course.path("autograded", "cheating", "01_linear_models").is_file()
    errors = " ".join(course.graded_result("cheating", "01_linear_models")["errors"])
    assert "SPY-FOUND-NOTHING" in errors and "LEAKED" not in errors  # the spy ran, and read nothing
    for folder in (course.root, Path("/tmp"), Path.home()):
        assert not (folder / MARKER).exists(), f"student code wrote {folder / MARKER}"


@slow
def test_crashing_and_hanging_code_is_graded_with_a_reason(course: Course) -> None:
    assert course.path("autograded", "crashing", "01_linear_models").is_file()
    result = {e["name"]: e for e in course.graded_result("crashing", "01_linear_models")["exercises"]}
    for name, status in (("softmax", "error"), ("cross_entropy", "timeout")):
        grade = course.grade("crashing", "01_linear_models", f"test_{name}")
        # scored 0, and left for the instructor to confirm, with the reason as a comment
        assert grade["auto_score"] == 0 and grade["needs_manual_grade"] is True
        assert result[name]["status"] == status
        reasons = [result[name]["message"]] + [t["message"] for t in result[name]["tests"]]
        assert any(reason.strip() for reason in reasons)
    # the batch went on: the students graded after it got their marks
    assert course.grade("perfect", "01_linear_models", "test_softmax")["auto_score"] == registry.BY_NAME["softmax"].points
    assert course.grade("partial", "01_linear_models", "test_softmax")["auto_score"] > 0


@slow
def test_warnings_on_stderr_do_not_zero_a_passing_cell(course: Course) -> None:
    # the tampering student's code warns and prints to stderr while loading and on every call
    for exercise in registry.assignments()["01_linear_models"]:
        assert course.grade("tampering", "01_linear_models", f"test_{exercise.name}")["auto_score"] == exercise.points


@slow
@pytest.mark.parametrize("assignment, student", EVERY_SUBMISSION)
def test_feedback_shows_the_engines_messages_and_no_hidden_tests(course: Course, assignment: str, student: str) -> None:
    page = course.path("feedback", student, assignment, ".html").read_text(encoding="utf-8")
    for marker in HIDDEN_MARKERS:
        assert marker not in page
    text = html.unescape(page)
    result = course.graded_result(student, assignment)
    typed = NotebookResult.from_json(result)
    for exercise, typed_exercise in zip(result["exercises"], typed.exercises, strict=True):
        for line in feedback_text(typed_exercise, typed.errors).split("\n"):
            assert line in text
        if exercise["status"] != "not_attempted":
            for test in exercise["tests"]:
                if not test["passed"] and test["message"]:
                    assert test["message"].strip().split("\n")[0][:80] in text
        else:
            assert exercise["message"] in text
    # the autograded notebooks (what formgrader shows) carry no hidden tests either
    autograded = course.path("autograded", student, assignment).read_text(encoding="utf-8")
    for marker in HIDDEN_MARKERS:
        assert marker not in autograded


@slow
def test_export_has_a_column_per_exercise(course: Course) -> None:
    rows = list(csv.DictReader((course.root / "grades.csv").open(newline="", encoding="utf-8")))
    names = [e.name for a in ASSIGNMENTS for e in registry.assignments()[a]]
    assert list(rows[0])[-len(names):] == names
    everyone = sorted({s for students in STUDENTS.values() for s in students})
    assert sorted((r["assignment"], r["student_id"]) for r in rows) == sorted(
        (a, s) for a in ASSIGNMENTS for s in everyone)
    for row in rows:
        exercises = registry.assignments()[row["assignment"]]
        others = [n for n in names if n not in {e.name for e in exercises}]
        assert all(row[n] == "" for n in others)
        submitted = row["student_id"] in STUDENTS[row["assignment"]]
        for exercise in exercises:
            expected = (course.grade(row["student_id"], row["assignment"], f"test_{exercise.name}")["score"]
                        if submitted else 0.0)
            assert float(row[exercise.name]) == expected
        assert float(row["score"]) == pytest.approx(sum(float(row[e.name]) for e in exercises))
        assert float(row["max_score"]) == sum(e.points for e in exercises)
