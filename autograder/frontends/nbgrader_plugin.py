"""nbgrader, scored by the sandboxed engine: preprocessors and an export plugin.

``nbgrader_config.py`` puts these classes into nbgrader's own pipelines, so that the instructor's
usual commands keep working while no student code ever runs in an nbgrader kernel:

``nbgrader autograde`` runs two passes over every submitted notebook.

* Sanitize: :class:`RestoreCellMetadata` first rewrites every cell's nbgrader metadata from the
  gradebook (flags, points), drops metadata that names no cell of the release, keeps one cell per
  grade id and puts back deleted autograder-test cells; then nbgrader's own ``ClearOutput``,
  ``DeduplicateIds``, ``OverwriteKernelspec``, ``OverwriteCells`` (locked sources back from the
  gradebook) and ``CheckCellMetadata`` run as usual. Tampered metadata can therefore neither move
  points nor stop the batch (stock nbgrader aborts the whole run on one duplicated test cell).
* Autograde: :class:`GradeWithEngine` replaces nbgrader's ``Execute``. It writes the sanitized
  notebook to a private temporary file and grades it with
  :func:`autograder.grading.engine.grade_notebook` (student code runs only in the bubblewrap sandbox, which
  sees nothing of the course tree); each ``test_<exercise>`` cell gets the engine's feedback
  (:func:`autograder.report.cell_feedback.feedback_text`) as its output and the hidden-test region
  of its source removed. :class:`SaveEngineGrades` (a ``SaveAutoGrades``) stores each cell's score
  from the engine's result, passed along in the conversion's ``resources`` (never read back from
  anything the student could have written), with partial credit.

Statuses that are not an ordinary score (``autograder/report/flags.py``: forbidden, timed out,
grader error, for review, unusable) reach the gradebook: the reason as the solution cell's comment,
the test cell marked for manual grading, the notebook flagged; an unusable notebook gets no score at
all. ``check_submissions`` (``Autograde.pre_convert_hook``) records renamed and unreadable notebooks
before nbgrader skips or fails on them, with the message ``grade`` and ``grade-batch`` give.
:func:`apply_result` is the part of grading that ``grade-batch --gradebook`` reuses with a recorded
result, and :class:`PerDayLatePenalty` the course's optional late policy.

``nbgrader generate_feedback`` runs :class:`HideHiddenTests` before nbgrader's ``GetGrades`` so
that feedback never shows hidden-test source, even for notebooks autograded by stock nbgrader.

``nbgrader export`` uses :class:`ExerciseCsvExportPlugin`: nbgrader's CSV columns plus one column
per exercise (per autograder-test cell), scores as the gradebook has them (manual overrides made
in formgrader included).

Importing this module is cheap (no torch): the engine is imported when the first notebook is graded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import v4 as nbf
from nbformat.notebooknode import NotebookNode, from_dict
from traitlets import Enum, Float, Integer, Unicode

from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin, LateSubmissionPlugin
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades

from autograder.course import registry
from autograder.errors import UnusableInput
from autograder.report import flags as flagging
from autograder.frontends import stale
from autograder.safeio import no_links_below
from autograder.safeio import row as safe_row
from autograder.report.cell_feedback import feedback_text
from autograder.report.common import points
from autograder.report.results import NotebookResult

#: Key of the engine's results in the conversion's ``resources`` and in the autograded notebook's
#: metadata (the full result, for instructors' tools; the feedback HTML does not show metadata).
RESULTS_KEY = "autograder"
BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"
NOT_GRADED = ("Not graded by the autograder: no exercise of this assignment is named by this cell's "
              "grade id ({grade_id!r}), and student code never runs in nbgrader's kernel. "
              "Grade this cell by hand in formgrader.")


class GradingRefused(RuntimeError):
    """The engine cannot grade this notebook; nbgrader reports it and goes on with the next one."""


# --------------------------------------------------------------------------------- helpers
def _nbgrader_meta(cell: Any) -> dict | None:
    meta = cell.get("metadata")
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else None


def _grade_id(cell: Any) -> str | None:
    nbg = _nbgrader_meta(cell)
    grade_id = nbg.get("grade_id") if nbg is not None else None
    return grade_id if isinstance(grade_id, str) and grade_id else None


def strip_hidden_tests(source: str, begin: str = BEGIN_HIDDEN, end: str = END_HIDDEN) -> str:
    """``source`` without its hidden-test regions (delimiter lines included).

    Unlike nbgrader's ``ClearHiddenTests`` it never raises: an unterminated region runs to the end
    of the cell, so nothing after a stray ``BEGIN`` line can leak.
    """
    kept, hiding = [], False
    for line in source.split("\n"):
        if begin in line:
            hiding = True
        elif end in line:
            hiding = False
        elif not hiding:
            kept.append(line)
    return "\n".join(kept).rstrip("\n")


def exercise_for_cell(grade_id: str) -> str | None:
    """The exercise an autograder-test cell covers: ``test_<exercise>`` names it."""
    if grade_id.startswith(registry.TEST_PREFIX):
        name = grade_id[len(registry.TEST_PREFIX):]
        if name in registry.BY_NAME:
            return name
    return None


def cell_score(score: float, engine_max: float, cell_max: float) -> float:
    """The engine's score in the cell's points (equal when the registry and gradebook agree)."""
    if engine_max <= 0:
        return 0.0
    value = score if engine_max == cell_max else score * cell_max / engine_max
    return float(min(max(value, 0.0), cell_max))


# ------------------------------------------------------------- only what was submitted
def submitted_problem(preprocessor: Any, resources: ResourcesDict) -> str | None:
    """None when the submission nbgrader reads (``submitted/<student>/<assignment>/<nb>.ipynb``)
    is a regular file reached through real folders; else one line saying which part is a link."""
    from nbgrader.coursedir import CourseDirectory

    info = resources.get("nbgrader") or {}
    student, assignment, notebook = info.get("student"), info.get("assignment"), info.get("notebook")
    if not (student and assignment and notebook):
        return None
    coursedir = CourseDirectory(config=preprocessor.config)
    submitted = Path(coursedir.root) / coursedir.submitted_directory
    path = submitted / str(student) / str(assignment) / f"{notebook}.ipynb"
    if not path.parent.parent.parent.is_dir():
        return None  # not graded from nbgrader's layout here
    problem = no_links_below(path, submitted)
    if problem is None:
        return None
    return problem.replace(str(submitted) + "/", "submitted/") + "; only regular files are graded and it was not read"


# ------------------------------------------------------------------------ sanitize: metadata
class RestoreCellMetadata(NbGraderPreprocessor):
    """Make a submission's nbgrader metadata the release's, whatever the student did to it.

    Runs first in ``Autograde.sanitize_preprocessors``. For every cell whose grade id is a cell of
    the release (per the gradebook), the nbgrader metadata is rebuilt from the gradebook; other
    nbgrader metadata is removed (the cell becomes an ordinary student cell). When a grade id occurs
    more than once, the last occurrence keeps it (as nbgrader's ``DeduplicateIds`` does) and the
    others lose their nbgrader metadata entirely (``DeduplicateIds`` leaves an empty dict, which
    ``CheckCellMetadata`` then rejects as an outdated schema, aborting the whole batch). Deleted
    grade cells are put back from the gradebook, after their exercise's check or solution cell.
    ``OverwriteCells`` then restores locked sources and cell types as usual.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        info = resources["nbgrader"]
        problem = submitted_problem(self, resources)
        if problem:  # graded as an empty notebook: nothing of what the link points to is kept
            self.log.error("Not reading the submission: %s", problem)
            nb.cells = []
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_notebook(info["notebook"], info["assignment"])
            grade_cells = {c.name: float(c.max_score) for c in notebook.grade_cells}
            solutions = {c.name for c in notebook.solution_cells}
            tasks = {c.name for c in notebook.task_cells}
            sources = {c.name: (c.cell_type, bool(c.locked), c.source) for c in notebook.source_cells}

        def canonical(name: str) -> dict[str, Any]:
            meta: dict[str, Any] = {
                "grade": name in grade_cells,
                "grade_id": name,
                "locked": sources[name][1],
                "schema_version": 3,
                "solution": name in solutions,
                "task": name in tasks,
            }
            if name in grade_cells:
                meta["points"] = grade_cells[name]
            return meta

        last: dict[str, int] = {}
        for index, cell in enumerate(nb.cells):
            if not isinstance(cell.get("metadata"), dict):
                cell["metadata"] = from_dict({})
            if "nbgrader" not in cell.metadata:
                continue
            name = _grade_id(cell)
            if name is None or name not in sources:
                if name is not None or cell.metadata.get("nbgrader"):
                    self.log.warning("Removing nbgrader metadata naming no cell of the release: %r", name)
                del cell.metadata["nbgrader"]
                continue
            last[name] = index
        for index, cell in enumerate(nb.cells):
            name = _grade_id(cell)
            if name is None:
                continue
            if last.get(name) != index:
                self.log.warning("Cell with id '%s' exists multiple times; keeping the last one", name)
                del cell.metadata["nbgrader"]
                continue
            cell.metadata["nbgrader"] = from_dict(canonical(name))

        for name in grade_cells:
            if name in last:
                continue
            cell_type, _, source = sources[name]
            self.log.warning("Grade cell '%s' is missing from the submission; putting it back", name)
            maker = nbf.new_code_cell if cell_type == "code" else nbf.new_markdown_cell
            cell = maker(source=source, metadata={"nbgrader": canonical(name)})
            if nb.get("nbformat_minor", 0) < 5:
                cell.pop("id", None)
            nb.cells.insert(self._insertion_point(nb, name), cell)
        return nb, resources

    @staticmethod
    def _insertion_point(nb: NotebookNode, grade_id: str) -> int:
        exercise = exercise_for_cell(grade_id)
        anchors = [f"{registry.CHECK_PREFIX}{exercise}", exercise] if exercise else []
        for anchor in anchors:
            for index, cell in enumerate(nb.cells):
                if _grade_id(cell) == anchor:
                    return index + 1
        return len(nb.cells)


# ---------------------------------------------------------------------- autograde: the engine
class GradeWithEngine(NbGraderPreprocessor):
    """Grade the notebook with the sandboxed engine instead of executing it in a kernel.

    Takes the place of nbgrader's ``Execute`` in ``Autograde.autograde_preprocessors``. Whatever
    the student's code does (raise, loop forever, ``os._exit``, monkeypatch ``torch``), it does it
    in the sandbox; the engine reports it as a score of 0 with a reason, and this notebook is
    graded. Only when the engine cannot grade at all (no sandbox on this machine, an assignment the
    registry does not know, a grader bug) does the notebook fail, with the reason in nbgrader's log:
    grading fails closed, and nbgrader goes on with the next submission.
    """

    device = Enum(["cpu", "cuda"], "cpu", help="Device the hidden tests run on.").tag(config=True)
    seed = Integer(None, allow_none=True,
                   help="Seed of the grader's random test inputs (default: derived from the course secret and "
                        "the notebook's graded content, so a regrade draws the same inputs).").tag(config=True)
    slot = Integer(0, help="Sandbox slot (unprivileged uid) used when nbgrader runs as root.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        info = resources["nbgrader"]
        problem = submitted_problem(self, resources)
        if problem:  # the sanitize pass already emptied it; say why it has no score
            nb.cells = [c for c in nb.cells if c.cell_type != "code" or utils.is_grade(c)]
        try:
            result = self.grade(nb, info["assignment"], info["notebook"])
        except Exception as error:
            # No score is recorded (a previous one stays), but the gradebook says why.
            status = "unusable" if isinstance(error, UnusableInput) else "error"
            message = str(error) if isinstance(error, (UnusableInput, GradingRefused)) else f"{type(error).__name__}: {error}"
            try:
                record_flags(info["db_url"], info["assignment"], str(info["student"]), info["notebook"],
                             flagging.for_failure(status, message), unscored=status == "unusable")
            except Exception as failure:  # noqa: BLE001 - the grading error is the one to report
                self.log.warning("Could not record the failure in the gradebook: %s: %s", type(failure).__name__, failure)
            raise
        if problem:
            result.errors.insert(0, problem)
        return apply_result(nb, resources, result, unusable=problem, log=self.log)

    def grade(self, nb: NotebookNode, assignment: str, notebook_id: str):
        """The engine's :class:`~autograder.report.results.NotebookResult` for this (sanitized) notebook."""
        exercises = [e for e in registry.assignments().get(assignment, []) if Path(e.notebook).stem == notebook_id]
        if not exercises:
            raise GradingRefused(
                f"the autograder's registry has no exercise in notebook {notebook_id!r} of assignment "
                f"{assignment!r}; refusing to grade it (student code never runs in nbgrader's kernel)")
        from autograder.grading import engine
        from autograder.submission import notebook as nbio

        trusted = nbio.RELEASE_DIR / assignment / exercises[0].notebook
        if not trusted.is_file():
            raise GradingRefused(f"the grader's trusted copy of the release, {trusted}, is missing: run "
                                 f"`nbgrader generate_assignment {assignment}` in the course root first")
        self.log.info("Grading %s/%s in the sandbox (device %s)", assignment, exercises[0].notebook, self.device)
        submitted = nbio.Submitted(exercises[0].notebook, json.dumps(nb, ensure_ascii=False).encode("utf-8"))
        try:
            result = engine.grade_notebook(submitted, device=self.device, sandbox=True, assignment=assignment,
                                           seed=self.seed, slot=self.slot)
        except Exception as error:
            self.log.error("The autograder could not grade this notebook: %s: %s", type(error).__name__, error)
            raise
        self.log.info("Engine score: %s / %s (%s)", points(result.score), points(result.max_score),
                      ", ".join(f"{e.name} {points(e.score)}/{points(e.max_score)} {e.status}" for e in result.exercises))
        return result


def apply_result(nb: NotebookNode, resources: ResourcesDict, result: NotebookResult, *, unusable: str | None = None,
                 log: Any = None) -> tuple[NotebookNode, ResourcesDict]:
    """Put the engine's ``result`` into the (sanitized) notebook and the conversion's resources:
    feedback as each test cell's output (hidden tests stripped), the full result, the digests the
    grade depends on (:mod:`~autograder.frontends.stale`) and the flags in the metadata."""
    info = resources["nbgrader"]
    data = result.to_json()
    by_cell = {registry.TEST_PREFIX + e.name: e for e in result.exercises}
    found = flagging.for_failure("unusable", unusable) if unusable else flagging.from_result(result)
    resources[RESULTS_KEY] = {
        "result": data,
        "scores": {cell: {"score": float(e.score), "max_score": float(e.max_score)} for cell, e in by_cell.items()},
        "flags": [vars(f) for f in found],
        "unscored": bool(unusable),
    }
    nb.metadata[RESULTS_KEY] = from_dict({"result": data, stale.METADATA_KEY: stale.parts(info["assignment"]),
                                          "flags": [f.comment() for f in found]})
    for cell in nb.cells:
        if cell.cell_type != "code" or not utils.is_grade(cell):
            continue
        grade_id = _grade_id(cell) or ""
        cell.source = strip_hidden_tests(cell.source)
        exercise = by_cell.get(grade_id)
        cell.execution_count = None
        if exercise is None:
            if log is not None:
                log.warning("Cell '%s' covers no exercise of the engine; it needs manual grading", grade_id)
            cell.outputs = [nbf.new_output("stream", name="stdout", text=NOT_GRADED.format(grade_id=grade_id) + "\n")]
            continue
        score = cell_score(exercise.score, exercise.max_score, float(cell.metadata.nbgrader["points"]))
        # The execute_result carries the score the way nbgrader's partial credit reads it, so
        # even nbgrader's stock SaveAutoGrades would record the engine's score.
        cell.outputs = [
            nbf.new_output("stream", name="stdout", text=feedback_text(exercise, result.errors)),
            nbf.new_output("execute_result", data={"text/plain": points(score)}, execution_count=None),
        ]
    return nb, resources


# ------------------------------------------------------------------------ flags in the gradebook
def _comment_lines(found: list[flagging.Flag], exercise: str, first: bool) -> list[str]:
    return [f.comment() for f in found if f.exercise == exercise or (f.exercise is None and first)]


def record_flags(db_url: str, assignment: str, student: str, notebook: str, found: list[flagging.Flag], *,
                 unscored: bool, timestamp: Any = None) -> None:
    """Record a submission that could not be graded: created if missing (with ``timestamp``), each
    test cell marked for manual grading (its automatic score removed when ``unscored``: an
    unreadable notebook never reads as a real 0), the reasons as comments, the notebook flagged."""
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        if timestamp is not None:
            gb.update_or_create_submission(assignment, student, timestamp=timestamp)
        else:
            gb.update_or_create_submission(assignment, student)
        submitted = gb.find_submission_notebook(notebook, assignment, student)
        for grade in submitted.grades:
            if unscored:
                grade.auto_score = None
            grade.needs_manual_grade = True
        order = [e.name for e in registry.assignments().get(assignment, [])]
        comments = sorted(submitted.comments, key=lambda c: order.index(c.name) if c.name in order else len(order))
        for index, comment in enumerate(comments):
            lines = _comment_lines(found, comment.name, index == 0)
            kept = [line for line in (comment.auto_comment or "").split("\n")
                    if line and not line.startswith(flagging.COMMENT_PREFIX)]
            comment.auto_comment = "\n".join(kept + lines) or None
        submitted.flagged = True
        gb.db.commit()


def live_db_url(default: str) -> str:
    """The gradebook of the running ``nbgrader`` command (command-line overrides included)."""
    try:
        from nbgrader.apps.nbgraderapp import NbGraderApp

        if NbGraderApp.initialized():
            return str(NbGraderApp.instance().subapp.coursedir.db_url)
    except Exception:  # noqa: BLE001 - not under the nbgrader command: the configured value
        pass
    return default


def check_submissions(db_url: str, notebooks: Iterable[str], log: Any = None) -> None:
    """``Autograde.pre_convert_hook``: before nbgrader reads a submission, record in the gradebook
    the ones it cannot grade, with the same message as ``grade`` and ``grade-batch``: a renamed
    notebook (nbgrader would skip it as unknown and grade nothing) or one that is not a notebook."""
    from autograder.submission import notebook as nbio

    db_url = live_db_url(db_url)
    paths = [Path(n) for n in notebooks]
    for path in paths:
        if len(path.parts) < 4:
            continue
        student, assignment = path.parent.parent.name, path.parent.name
        exercises = registry.assignments().get(assignment)
        if not exercises:
            continue
        expected = exercises[0].notebook
        problem = nbio.renamed(path.name, assignment)
        if problem and any(p.name == expected for p in paths):
            continue  # the released notebook is there too: that one is graded, nbgrader skips this one
        if problem is None:
            try:
                nbio.load(path)
            except UnusableInput as error:
                problem = str(error).replace(str(path), path.name)  # as grade-batch words it
        if problem:
            if log is not None:
                log.error("Not gradable: %s", problem)
            record_flags(db_url, assignment, student, Path(expected).stem, flagging.for_failure("unusable", problem),
                         unscored=True)


class SaveEngineGrades(SaveAutoGrades):
    """nbgrader's ``SaveAutoGrades``, with code grade cells scored by the engine.

    The score of an autograder-test cell is the engine's score of the exercise it covers, taken from
    the ``resources`` that :class:`GradeWithEngine` filled in during this very conversion; a code
    grade cell that no exercise covers gets no automatic score and is flagged for manual grading
    (never full credit for running without an error). Manually graded Markdown cells are handled
    as nbgrader always does.
    """

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        engine = resources.get(RESULTS_KEY)
        if not isinstance(engine, dict) or "scores" not in engine:
            raise GradingRefused("SaveEngineGrades needs GradeWithEngine earlier in Autograde.autograde_preprocessors")
        self._engine_scores: dict[str, dict[str, float]] = engine["scores"]
        self._flags = [flagging.Flag(**f) for f in engine.get("flags", [])]
        self._unscored = bool(engine.get("unscored"))
        order = [e.name for e in registry.assignments().get(resources["nbgrader"]["assignment"], [])]
        self._first = order[0] if order else None
        self._seen: set[str] = set()
        nb, resources = super().preprocess(nb, resources)
        with Gradebook(self.db_url) as gb:
            submitted = gb.find_submission_notebook(self.notebook_id, self.assignment_id, self.student_id)
            submitted.flagged = bool(self._flags)
            gb.db.commit()
        missing = [name for name in self._engine_scores if name not in self._seen]
        if missing:  # RestoreCellMetadata puts deleted test cells back; this is only a safety net
            with Gradebook(self.db_url) as gb:
                self.gradebook = gb
                for name in missing:
                    try:
                        self._store(name)
                    except MissingEntry:
                        self.log.warning("The gradebook has no grade cell '%s'", name)
        return nb, resources

    def _store(self, grade_id: str) -> None:
        grade = self.gradebook.find_grade(grade_id, self.notebook_id, self.assignment_id, self.student_id)
        entry = self._engine_scores.get(grade_id)
        if entry is None or self._unscored:
            grade.auto_score = None
        else:
            grade.auto_score = cell_score(entry["score"], entry["max_score"], float(grade.max_score))
            if entry["max_score"] != float(grade.max_score):
                self.log.warning("Cell '%s' is worth %s points in the gradebook but %s in the registry; "
                                 "the engine's score was scaled", grade_id, grade.max_score, entry["max_score"])
        exercise = exercise_for_cell(grade_id)
        flagged = any(f.exercise == exercise or (f.exercise is None and exercise == self._first) for f in self._flags)
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None or flagged
        self.gradebook.db.commit()

    def _add_comment(self, cell: NotebookNode, resources: ResourcesDict) -> None:
        super()._add_comment(cell, resources)  # nbgrader's "No response." for an untouched answer
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        lines = _comment_lines(self._flags, grade_id, grade_id == self._first)
        if lines:
            comment = self.gradebook.find_comment(grade_id, self.notebook_id, self.assignment_id, self.student_id)
            comment.auto_comment = "\n".join(([comment.auto_comment] if comment.auto_comment else []) + lines)
            self.gradebook.db.commit()

    def _add_score(self, cell: NotebookNode, resources: ResourcesDict) -> None:
        if cell.cell_type != "code":
            return super()._add_score(cell, resources)
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        self._seen.add(grade_id)
        self._store(grade_id)


# ------------------------------------------------------------------------------- feedback
class HideHiddenTests(NbGraderPreprocessor):
    """Remove hidden-test regions from grade cells before feedback is rendered.

    The autograded notebooks of this pipeline already lack them, but ``OverwriteCells`` restores
    locked test cells from the gradebook, which stores them with their hidden tests; this keeps
    feedback clean for notebooks autograded any other way too.
    """

    begin_test_delimeter = Unicode(BEGIN_HIDDEN).tag(config=True)
    end_test_delimeter = Unicode(END_HIDDEN).tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, index: int) -> tuple[NotebookNode, ResourcesDict]:
        source = cell.get("source", "")
        if isinstance(source, str) and self.begin_test_delimeter in source:
            cell.source = strip_hidden_tests(source, self.begin_test_delimeter, self.end_test_delimeter)
        return cell, resources


# ---------------------------------------------------------------------------- late policy
class PerDayLatePenalty(LateSubmissionPlugin):
    """A late policy: ``per_day`` of the notebook's score for each day (or part of one) after the
    due date, at most ``cap`` of it. Off unless the course configures it (``nbgrader_config.py``)::

        c.AssignLatePenalties.plugin_class = "autograder.frontends.nbgrader_plugin.PerDayLatePenalty"
        c.PerDayLatePenalty.per_day = 0.1   # 10 % of the score per day late
        c.PerDayLatePenalty.cap = 0.5       # never more than half of it

    ``nbgrader autograde`` and ``grade-batch --gradebook`` apply it alike: both run nbgrader's
    ``AssignLatePenalties`` with this configuration, from the submission's ``timestamp.txt`` and the
    assignment's due date.
    """

    per_day = Float(0.1, help="Fraction of the score taken per day (or part of a day) late.").tag(config=True)
    cap = Float(0.5, help="Largest fraction of the score taken, however late.").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        if total_seconds_late <= 0 or score <= 0:
            return None
        days = -(-float(total_seconds_late) // 86400)  # a started day counts
        fraction = min(max(self.cap, 0.0), max(self.per_day, 0.0) * days, 1.0)
        return round(float(score) * fraction, 6)


def late_penalty(score: float, seconds_late: float, per_day: float, cap: float) -> float:
    """:class:`PerDayLatePenalty`'s rule, for reports that do not go through nbgrader."""
    plugin = PerDayLatePenalty(per_day=per_day, cap=cap)
    return plugin.late_submission_penalty("", score, seconds_late) or 0.0


# --------------------------------------------------------------------------------- export
def column_name(grade_id: str) -> str:
    """CSV column of a grade cell: its exercise's name, or its grade id for other grade cells."""
    return exercise_for_cell(grade_id) or grade_id


class ExerciseCsvExportPlugin(ExportPlugin):
    """nbgrader's CSV export with one more column per exercise.

    One row per (assignment, student), with nbgrader's usual columns (``assignment``, ``duedate``,
    ``timestamp``, ``student_id``, ``last_name``, ``first_name``, ``email``, ``raw_score``,
    ``late_submission_penalty``, ``score``, ``max_score``), then one column per grade cell of the
    exported assignments, named after the exercise it covers (``softmax``, ``clip_grad``...), in
    the registry's order. A cell holds that student's score as the gradebook has it (a manual
    score from formgrader replaces the automatic one); it is empty for another assignment's
    exercises and for a submission with no score, and 0 when nothing was submitted. A ``status``
    column (after ``max_score``) says what the numbers mean: ``graded``, ``not submitted``, the flags
    read back from the gradebook's comments (``forbidden: softmax``, ``unusable``...), ``needs manual
    grading``, plus ``late (N days)``. Written with ``csv`` (quoted where needed).
    """

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "grades.csv"
        students = [str(s) for s in self.student]
        assignments = [str(a) for a in self.assignment]
        self.log.info("Exporting grades, with a column per exercise, to %s", dest)

        chosen = [a for a in gradebook.assignments if not assignments or a.name in assignments]
        cells: dict[str, list[tuple[str, str]]] = {}  # assignment -> [(notebook, grade_id)]
        for assignment in chosen:
            cells[assignment.name] = [(nb.name, gc.name) for nb in assignment.notebooks for gc in nb.grade_cells]
        order = {f"{registry.TEST_PREFIX}{e.name}": i for i, e in enumerate(registry.EXERCISES)}
        columns: list[str] = []
        for assignment in chosen:
            for _, grade_id in sorted(cells[assignment.name], key=lambda c: (order.get(c[1], len(order)), c[1])):
                if column_name(grade_id) not in columns:
                    columns.append(column_name(grade_id))

        keys = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                "raw_score", "late_submission_penalty", "score", "max_score", "status"]
        clash = [c for c in columns if c in keys]
        if clash:
            columns = [f"exercise:{c}" if c in keys else c for c in columns]
        with open(dest, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(keys + columns)
            for assignment in chosen:
                for student in gradebook.students:
                    if students and student.id not in students:
                        continue
                    row = self._row(gradebook, assignment, student)
                    per_cell = self._cells(gradebook, assignment, student, cells[assignment.name], row is None)
                    if row is None:
                        row = {"timestamp": "", "raw_score": 0.0, "late_submission_penalty": 0.0, "score": 0.0,
                               "status": "not submitted"}
                    row.update(assignment=assignment.name, duedate=assignment.duedate, student_id=student.id,
                               last_name=student.last_name, first_name=student.first_name, email=student.email,
                               max_score=assignment.max_score)
                    values = [row[k] for k in keys]
                    for column in columns:
                        raw = column.removeprefix("exercise:") if clash else column
                        values.append(per_cell.get(raw, ""))
                    writer.writerow(safe_row(["" if v is None else str(v) for v in values]))

    @staticmethod
    def _row(gradebook: Gradebook, assignment: Any, student: Any) -> dict[str, Any] | None:
        try:
            submission = gradebook.find_submission(assignment.name, student.id)
        except MissingEntry:
            return None
        penalty = submission.late_submission_penalty
        row = {"timestamp": submission.timestamp, "raw_score": submission.score,
               "late_submission_penalty": penalty, "score": max(0.0, submission.score - penalty)}
        pairs = [pair for notebook in submission.notebooks for comment in notebook.comments
                 for pair in flagging.parse(comment.auto_comment)]
        grades = [grade for notebook in submission.notebooks for grade in notebook.grades]
        unscored = bool(grades) and all(g.auto_score is None and g.manual_score is None for g in grades)
        status = flagging.summary(pairs)
        if not status:
            if unscored:
                status = "not graded (see the autograde log)"
            elif any(g.needs_manual_grade for g in grades):
                status = "needs manual grading"
            elif any(n.flagged for n in submission.notebooks):
                status = "flagged"
            else:
                status = "graded"
        if submission.total_seconds_late > 0:
            status += f"; late ({submission.total_seconds_late / 86400:.1f} days)"
        if unscored:  # nothing was scored: no number that would read as a real 0
            row.update(raw_score="", score="")
        row["status"] = status
        return row

    @staticmethod
    def _cells(gradebook: Gradebook, assignment: Any, student: Any, cells: list[tuple[str, str]],
               missing: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for notebook, grade_id in cells:
            if missing:
                out[column_name(grade_id)] = 0.0
                continue
            try:
                grade = gradebook.find_grade(grade_id, notebook, assignment.name, student.id)
            except MissingEntry:
                out[column_name(grade_id)] = 0.0
                continue
            unscored = grade.auto_score is None and grade.manual_score is None
            out[column_name(grade_id)] = "" if unscored else grade.score
        return out


__all__ = [
    "ExerciseCsvExportPlugin",
    "GradeWithEngine",
    "GradingRefused",
    "HideHiddenTests",
    "PerDayLatePenalty",
    "RestoreCellMetadata",
    "SaveEngineGrades",
    "strip_hidden_tests",
]
