"""Structural notices: what a student should know about how their notebook was read, with cell
references they can find (the number Jupyter shows and the cell's first line)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograder.course import registry
from autograder.submission import notebook as nbio

ROOT = Path(__file__).resolve().parents[2]
RELEASED = ROOT / "assignments" / "01_linear_models" / "linear_models.ipynb"
EXERCISES = registry.assignments()["01_linear_models"]


def _notebook() -> nbformat.NotebookNode:
    return nbformat.read(RELEASED, as_version=4)


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def _notices(nb: nbformat.NotebookNode) -> list[str]:
    extracted = nbio.extract(nb, nbio.trusted_notebook("01_linear_models"))
    return nbio.structural_notices(extracted, list(EXERCISES))


def test_an_untouched_notebook_gets_no_notice():
    assert _notices(_notebook()) == []


def test_edits_of_the_locked_set_up_cell_are_said_to_be_discarded():
    nb = _notebook()
    setup = _cell(nb, "setup")
    setup.source += "\nimport torch.nn.functional as F\n"
    setup.execution_count = 1
    notices = _notices(nb)
    assert len(notices) == 1
    assert notices[0].startswith("cell [1] ")
    assert "your changes to the locked set-up cell were not used" in notices[0]
    assert "put imports in your own cell" in notices[0]


def test_a_function_defined_twice_says_which_cell_was_graded():
    nb = _notebook()
    _cell(nb, "softmax").source = "def softmax(X):\n    return X\n"
    _cell(nb, "softmax").execution_count = 3
    later = nbformat.v4.new_code_cell("# my better version\ndef softmax(X):\n    return X.exp() / X.exp().sum(-1, keepdim=True)\n",
                                      execution_count=9)
    nb.cells.append(later)
    notices = _notices(nb)
    assert notices == ['`softmax` is defined in 2 cells (cell [3] "def softmax(X):", cell [9] "# my better version"): '
                       'the last one, cell [9] "# my better version", was graded']


def test_a_missing_function_names_its_near_match():
    nb = _notebook()
    _cell(nb, "softmax").source = "def soft_max(X):\n    return X\n"
    notices = _notices(nb)
    assert len(notices) == 1 and "`softmax` is not defined, but `soft_max` is" in notices[0]
    assert 'cell [ ] "def soft_max(X):"' in notices[0]


def test_cell_labels_are_what_jupyter_shows():
    cell = nbformat.v4.new_code_cell("\n\n  x = torch.ones(3)  # a rather long first line that goes on\n", execution_count=12)
    assert nbio.cell_label(cell, 4) == 'cell [12] "x = torch.ones(3)  # a rather long fi..."'
    assert nbio.cell_label(nbformat.v4.new_code_cell(""), 4) == "cell [ ] (the 4th cell)"
