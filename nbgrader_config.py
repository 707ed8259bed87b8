"""This repository is an nbgrader course: sources in solutions/, student versions in assignments/.

`nbgrader autograde` is scored by the course's sandboxed engine, not by running the notebooks in
a kernel (see docs/instructors.md and autograder/frontends/nbgrader_plugin.py).
"""

import os
import sys

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

# The course root is the folder of this file (nbgrader reads it from the working directory).
COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
# Only notebooks are released: nothing else in solutions/ is copied to students.
c.CourseDirectory.include = ["*.ipynb"]
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# ---- The sandboxed engine behind nbgrader -----------------------------------------------------
# The course's `autograder` package (and the `reference` package it grades against) live in the
# course root. nbgrader's commands put their working directory on sys.path already; this also
# covers a Jupyter server (formgrader) started from another folder.
if COURSE_ROOT not in sys.path:
    sys.path.append(COURSE_ROOT)

# Classes are named, not imported: nothing here can fail, because traitlets ignores a config file
# that raises and nbgrader would then fall back to executing notebooks in a kernel. A broken
# `autograder` package makes every notebook fail to autograde instead (fail closed).
PLUGIN = "autograder.frontends.nbgrader_plugin."

# autograde, pass 1 (sanitize): metadata rebuilt from the gradebook, then nbgrader's usual steps.
c.Autograde.sanitize_preprocessors = [
    PLUGIN + "RestoreCellMetadata",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# autograde, pass 2: the engine grades in its sandbox in place of nbgrader's Execute (no kernel
# ever runs student code); its per-exercise scores go to the gradebook, partial credit included.
c.Autograde.autograde_preprocessors = [
    PLUGIN + "GradeWithEngine",
    "nbgrader.preprocessors.LimitOutput",
    PLUGIN + "SaveEngineGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# generate_feedback: hidden-test regions never reach the HTML.
c.GenerateFeedback.preprocessors = [
    PLUGIN + "HideHiddenTests",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# export: nbgrader's CSV columns plus a status column and one column per exercise.
c.ExportApp.plugin_class = PLUGIN + "ExerciseCsvExportPlugin"


# autograde: before nbgrader reads a submission, a renamed notebook or one that is not a notebook is
# recorded in the gradebook as unusable, with the reason (nbgrader alone would skip it, or fail).
# (Imported when called, and nbgrader catches a failing hook: it cannot break this file.)
def _record_ungradable(assignment=None, student=None, notebooks=()):
    plugin = __import__("importlib").import_module(PLUGIN.rstrip("."))
    plugin.check_submissions(c.CourseDirectory.db_url, notebooks)


c.Autograde.pre_convert_hook = _record_ungradable

# autograde: submissions graded before the points, hidden suites or reference changed are stale;
# their autograded copies are removed (with a warning naming each) so that nbgrader grades them again.
if os.path.basename(sys.argv[0]) == "nbgrader" and sys.argv[1:2] == ["autograde"]:
    try:
        stale = __import__("importlib").import_module("autograder.frontends.stale")
        stale.invalidate_autograded(__import__("pathlib").Path(COURSE_ROOT),
                                    lambda line: print(f"[AutogradeApp | WARNING] {line}", file=sys.stderr))
    except Exception as error:  # noqa: BLE001 - a broken check must not make nbgrader drop this file
        print(f"[AutogradeApp | WARNING] stale grades not checked: {type(error).__name__}: {error}", file=sys.stderr)

# Late policy (off by default): a per-day penalty with a cap, applied alike by `nbgrader autograde`
# and `grade-batch --gradebook` from each submission's timestamp.txt and the assignment's due date.
# c.AssignLatePenalties.plugin_class = PLUGIN + "PerDayLatePenalty"
# c.PerDayLatePenalty.per_day = 0.1   # fraction of the score taken per day (or part of a day) late
# c.PerDayLatePenalty.cap = 0.5       # never more than this fraction of the score

# Grading options (uncomment to change):
# c.GradeWithEngine.device = "cuda"   # the device the hidden tests run on (default: "cpu")
# c.GradeWithEngine.seed = 1234       # reproducible random test inputs (default: fresh each notebook)
