"""``grade-batch --gradebook``: leave the course exactly as ``nbgrader autograde`` would.

For every submission in nbgrader's layout (``<course>/submitted/<student>/<assignment>/<notebook>``),
graded or not:

1. the student and the submission are created if missing, **with the submission's timestamp**
   (nbgrader's ``timestamp.txt`` beside the notebook), as ``nbgrader autograde --create`` does;
2. a graded notebook goes through the course's own nbgrader pipelines, read from its
   ``nbgrader_config.py``: the sanitize preprocessors (metadata rebuilt from the gradebook, outputs
   cleared, locked cells restored), then the autograde preprocessors, where the batch's recorded
   result stands in for grading (:func:`~autograder.frontends.nbgrader_plugin.apply_result`: no
   student code runs here): scores and flags through ``SaveEngineGrades``, late penalties through
   ``AssignLatePenalties`` (with the course's late policy), and the autograded notebook is written to
   ``<course>/autograded/<student>/<assignment>/``, with the submission's other files, where
   ``nbgrader generate_feedback`` reads it;
3. a submission that could not be graded (``unusable``: not a notebook, renamed...; ``error``: the
   grader failed) gets its row all the same: no score (never a real 0), every test cell marked for
   manual grading, the reason as a comment, the notebook flagged; no autograded copy is left, as
   nbgrader removes a failed one.

The assignment must already be in the gradebook (``nbgrader generate_assignment`` puts it there).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from autograder.course import registry
from autograder.report.records import BatchRecord, Lateness, RecordStatus
from autograder.report.results import NotebookResult

DEFAULT_SANITIZE = ["nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.DeduplicateIds",
                    "nbgrader.preprocessors.OverwriteKernelspec", "nbgrader.preprocessors.OverwriteCells",
                    "nbgrader.preprocessors.CheckCellMetadata"]
IGNORED = (".ipynb_checkpoints", "__pycache__", "feedback")


def course_config(course: Path, db_url: str) -> Any:
    """The course's nbgrader configuration (its ``nbgrader_config.py``), pointed at ``db_url``."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if (course / "nbgrader_config.py").is_file():
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = db_url
    return config


def _classes(items: Any, default: list[str]) -> list[type]:
    from traitlets.utils.importstring import import_item

    return [import_item(item) if isinstance(item, str) else item for item in (items or default)]


def submission_timestamp(folder: Path) -> Any:
    """The submission time in ``folder/timestamp.txt`` as nbgrader reads it, or None."""
    from nbgrader.utils import parse_utc

    path = folder / "timestamp.txt"
    if path.is_symlink() or not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        return parse_utc(text) if text else None
    except ValueError:
        return None


def autograde(course: Path, config: Any, path: Path, student: str, assignment: str, notebook: str,
              result: NotebookResult, timestamp: Any) -> Path:
    """nbgrader's two autograde passes on ``path``, with ``result`` standing in for grading; returns
    the autograded notebook's path."""
    import nbformat
    from nbgrader.api import Gradebook

    from autograder.frontends.nbgrader_plugin import GradeWithEngine, apply_result

    db_url = config.CourseDirectory.db_url
    with Gradebook(db_url) as gb:
        gb.update_or_create_student(student)
        if timestamp is not None:
            gb.update_or_create_submission(assignment, student, timestamp=timestamp)
        else:
            gb.update_or_create_submission(assignment, student)
    resources: dict[str, Any] = {"nbgrader": {"notebook": notebook, "assignment": assignment, "student": student,
                                              "db_url": db_url}, "metadata": {"path": str(path.parent)}}
    nb = nbformat.read(str(path), as_version=4)
    for cls in _classes(config.Autograde.get("sanitize_preprocessors"), DEFAULT_SANITIZE):
        nb, resources = cls(config=config).preprocess(nb, resources)
    steps = _classes(config.Autograde.get("autograde_preprocessors"), [])
    if not any(isinstance(cls, type) and issubclass(cls, GradeWithEngine) for cls in steps):
        raise RuntimeError(f"{course / 'nbgrader_config.py'} does not grade with the engine (GradeWithEngine)")
    for cls in steps:
        if issubclass(cls, GradeWithEngine):
            nb, resources = apply_result(nb, resources, result)
        else:
            nb, resources = cls(config=config).preprocess(nb, resources)
    target = course / "autograded" / student / assignment / f"{notebook}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))
    for other in sorted(path.parent.iterdir()):  # timestamp.txt and the like, as nbgrader copies them
        if other.suffix == ".ipynb" or other.name in IGNORED or other.is_symlink() or not other.is_file():
            continue
        shutil.copyfile(other, target.parent / other.name)
    return target


def lateness(db_url: str, assignment: str, student: str) -> Lateness:
    """How late the submission is by the gradebook (due date, timestamp, extension), and its penalty."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        submission = gb.find_submission(assignment, student)
        return Lateness(seconds=float(submission.total_seconds_late or 0),
                        penalty=float(submission.late_submission_penalty or 0))


def write(db_url: str, records: list[BatchRecord]) -> tuple[int, list[str], dict[str, Lateness]]:
    """Store every submission; returns (submissions written, one line per submission skipped,
    key -> lateness of the submissions written)."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.report import flags
    from autograder.frontends.nbgrader_plugin import record_flags

    written, skipped, late = 0, [], {}
    configs: dict[Path, Any] = {}
    for record in records:
        student, assignment = record.student, record.assignment
        if not student:
            skipped.append(f"{record.key}: not in nbgrader's layout (submitted/<student>/<assignment>/), no student")
            continue
        exercises = registry.assignments().get(str(assignment))
        if not exercises:
            skipped.append(f"{record.key}: {assignment!r} is not an assignment of the course")
            continue
        path = Path(record.path).absolute()
        course = path.parent.parent.parent.parent
        notebook = Path(exercises[0].notebook).stem
        with Gradebook(db_url) as gb:
            try:
                gb.find_notebook(notebook, assignment)
            except MissingEntry:
                skipped.append(f"{record.key}: the gradebook has no notebook {notebook!r} in assignment {assignment!r} "
                               f"(run `nbgrader generate_assignment {assignment}`)")
                continue
        config = configs.get(course) or configs.setdefault(course, course_config(course, db_url))
        timestamp = submission_timestamp(path.parent)
        status, message = record.status, record.message
        if record.graded is not None and path.name == exercises[0].notebook:
            try:
                autograde(course, config, path, str(student), str(assignment), notebook, record.graded, timestamp)
                written += 1
                late[record.key] = lateness(db_url, str(assignment), str(student))
                continue
            except Exception as error:  # noqa: BLE001 - recorded as a grader error, like a failed autograde
                status, message = RecordStatus.ERROR, f"writing the gradebook failed: {type(error).__name__}: {error}"
        failed = course / "autograded" / str(student) / str(assignment) / f"{notebook}.ipynb"
        if failed.is_file() and not failed.is_symlink():
            failed.unlink()  # nbgrader removes the autograded copy of a notebook it failed to grade
        record_flags(db_url, str(assignment), str(student), notebook, flags.for_failure(status.value, message),
                     unscored=status == RecordStatus.UNUSABLE, timestamp=timestamp)
        written += 1
        late[record.key] = lateness(db_url, str(assignment), str(student))
    return written, skipped, late
