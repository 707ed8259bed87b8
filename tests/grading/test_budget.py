"""One budget per submission, across loading, restarts and calls, in the cold and the batch grader:
past it, the tests not yet run fail with a clear message, and the report is still written."""

from __future__ import annotations

import json
import time

import pytest

from autograder.course import registry
from autograder.sandbox import bubblewrap as sandbox
from bench import submissions as make

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason=f"sandbox: {sandbox.unavailable_reason()}"),
]

BUDGET = 12.0
SLEEPY = ("import time\ntime.sleep(5)\n"
          "def softmax(X):\n    time.sleep(5)\n    return X.exp() / X.exp().sum(-1, keepdim=True)\n")


def _notebook() -> dict:
    nb = make.notebook_with("01_linear_models", {"cross_entropy": sorted(
        n for n in make.implementations("cross_entropy") if n.startswith("correct_"))[0]})
    (cell,) = [c for c in nb["cells"] if c.get("cell_type") == "code" and make._grade_id(c) == "softmax"]
    cell["source"] = SLEEPY
    for extra in range(3):  # cells that sleep just under nothing but add up
        nb["cells"].insert(nb["cells"].index(cell), {"cell_type": "code", "execution_count": None, "id": f"z{extra}",
                                                     "metadata": {}, "outputs": [], "source": "time.sleep(4)\n"})
    return nb


def _check(result: dict, seconds: float) -> None:
    assert seconds < BUDGET + 60, seconds  # the budget, plus the grader's own work
    assert any("time budget" in e for e in result["errors"]), result["errors"]
    messages = [t["message"] for e in result["exercises"] for t in e["tests"] if not t["passed"]]
    assert messages and any("time budget" in m for m in messages)
    assert sum(e["score"] for e in result["exercises"]) < result["max_score"]


def test_cold_grading_stops_at_the_budget(tmp_path) -> None:
    from autograder.grading.engine import grade_notebook

    path = tmp_path / registry.assignments()["01_linear_models"][0].notebook
    path.write_text(json.dumps(_notebook()))
    started = time.monotonic()
    result = grade_notebook(path, budget_s=BUDGET, slot=37)
    _check(result.to_json(), time.monotonic() - started)


def test_batch_grading_stops_at_the_budget() -> None:
    from autograder.frontends.batch.grader import SlotGrader

    grader = SlotGrader(36)
    try:
        started = time.monotonic()
        out = grader.grade({"key": "sleepy", "name": "linear_models.ipynb", "data": json.dumps(_notebook()).encode(),
                            "assignment": "01_linear_models", "seed": 1, "device": "cpu", "budget_s": BUDGET})
        assert out.status == "graded" and out.result is not None, out
        _check(out.result.to_json(), time.monotonic() - started)
    finally:
        grader.close()


def test_fresh_budgets_reach_the_live_worker() -> None:
    """``reset_budgets`` (one warm worker grading many submissions in turn) gives the live worker
    the fresh reply budget too: a budget used up by earlier submissions must not fail later ones."""
    import torch

    from autograder.sandbox import session as client

    code = "def softmax(X):\n    return X.exp() / X.exp().sum(-1, keepdim=True)\n"
    with client.StudentSession([client.Cell(code, "cell [1]")], sandboxed=False, call_timeout=10.0) as student:
        student.start()
        student.vjp("softmax", {"X": torch.ones(64, 64)})
        spent = student.reply_budget
        assert spent.left < spent.total
        left = spent.left
        student.reset_budgets()
        student.vjp("softmax", {"X": torch.ones(64, 64)})
        assert spent.left == left  # the old budget is no longer charged...
        assert student.reply_budget.left < student.reply_budget.total  # ...the fresh one is
