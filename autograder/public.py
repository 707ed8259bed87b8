"""What the notebooks' check cells import: ``from autograder.public import check``.

The checks themselves live in :mod:`autograder.grading.public`; this module keeps the import path
that released notebooks use stable.
"""

from autograder.grading.public import check, hidden_tests_run_by_the_grader

__all__ = ["check", "hidden_tests_run_by_the_grader"]
