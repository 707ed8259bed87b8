"""Writing a batch's scores into an nbgrader gradebook (``--gradebook sqlite:///gradebook.db``).

For every graded submission in nbgrader's layout (``submitted/<student>/<assignment>/...``), the
student and the submission are created if they are missing (as ``nbgrader autograde --create``
does), and each autograder-test cell ``test_<exercise>`` of the notebook gets the engine's score of
that exercise as its automatic score, scaled to the cell's points when the gradebook and the
registry disagree (``nbgrader_plugin.cell_score``, the same rule as ``nbgrader autograde`` with this
course's configuration). Cells no exercise covers are left for manual grading; a manual score set in
formgrader is kept (the cell then still needs manual grading, as in nbgrader).

The assignment must already be in the gradebook (``nbgrader generate_assignment`` puts it there).
"""

from __future__ import annotations

from typing import Any

from autograder.course import registry


def write(db_url: str, records: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Store the scores; returns (submissions written, one line per submission skipped)."""
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.frontends.nbgrader_plugin import cell_score

    written, skipped = 0, []
    with Gradebook(db_url) as gradebook:
        for record in records:
            result = record.get("result")
            student = record.get("student")
            if record.get("status") != "graded" or not result:
                continue
            assignment = result.get("assignment") or record.get("assignment")
            if not student:
                skipped.append(f"{record['key']}: not in nbgrader's layout (submitted/<student>/<assignment>/), no student")
                continue
            notebook = str(record.get("notebook", "")).removesuffix(".ipynb")
            try:
                gradebook.find_notebook(notebook, assignment)
            except MissingEntry:
                skipped.append(f"{record['key']}: the gradebook has no notebook {notebook!r} in assignment {assignment!r}")
                continue
            gradebook.update_or_create_student(student)
            gradebook.update_or_create_submission(assignment, student)
            for exercise in result["exercises"]:
                cell = registry.TEST_PREFIX + exercise["name"]
                try:
                    grade = gradebook.find_grade(cell, notebook, assignment, student)
                except MissingEntry:
                    skipped.append(f"{record['key']}: the gradebook has no grade cell {cell!r}")
                    continue
                grade.auto_score = cell_score(float(exercise["score"]), float(exercise["max_score"]), float(grade.max_score))
                grade.needs_manual_grade = grade.manual_score is not None
            gradebook.db.commit()
            written += 1
    return written, skipped
