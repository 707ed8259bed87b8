"""End to end through the real sandbox: solutions get full marks, stubs get zero, typical mistakes
lose points on a test whose message names the bug, and bad input gets a defined outcome."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from autograder.course import registry
from autograder.sandbox import bubblewrap as sandbox
from autograder.grading.engine import check_notebook, grade_notebook

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "submissions"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sandbox.unavailable_reason() is not None, reason=f"sandbox: {sandbox.unavailable_reason()}"),
]

ASSIGNMENTS = sorted(registry.assignments())


def _notebook(assignment: str, folder: str) -> Path:
    return ROOT / folder / assignment / registry.assignments()[assignment][0].notebook


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solutions_score_full_marks(assignment: str) -> None:
    result = grade_notebook(_notebook(assignment, "solutions"))
    report = {e.name: (e.status, [t.message for t in e.tests if not t.passed]) for e in result.exercises}
    assert result.official
    assert result.score == result.max_score == sum(e.points for e in registry.assignments()[assignment]), report
    assert all(e.status == "passed" for e in result.exercises), report


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_stubs_score_zero_not_attempted(assignment: str) -> None:
    result = grade_notebook(_notebook(assignment, "assignments"))
    assert result.score == 0
    assert [e.status for e in result.exercises] == ["not_attempted"] * len(result.exercises)


# example student -> {exercise: (status, test that must fail, word its message must contain)}
EXPECTED_EXAMPLES = {
    "ada_perfect/linear_models.ipynb": {"softmax": ("passed", None, None), "cross_entropy": ("passed", None, None)},
    "ben_unstable_softmax/linear_models.ipynb": {
        "softmax": ("partial", "test_stability", "maximum"),
        "cross_entropy": ("partial", "test_values", "mean"),
    },
    "eve_forbidden_call/linear_models.ipynb": {
        "softmax": ("forbidden", None, "torch.nn.functional.softmax"),
        "cross_entropy": ("passed", None, None),
    },
    "sam_not_started/linear_models.ipynb": {"softmax": ("not_attempted", None, None),
                                            "cross_entropy": ("not_attempted", None, None)},
    "dan_no_rescale/mlp.ipynb": {"dropout": ("partial", "test_rescaling", "1 - drop_prob")},
    "cleo_flipped_kernel/cnn.ipynb": {"corr2d": ("partial", "test_not_flipped", "flip")},
    "ivy_norm_after_clip/rnn.ipynb": {"clip_grad": ("partial", "test_returns_norm", "before")},
    "hana_eps_inside_sqrt/optimization.ipynb": {"adam_step": ("partial", "test_eps_outside_sqrt", "square root")},
    "finn_inverted_mask/attention.ipynb": {"self_attention": ("partial", "test_causal_mask", "True")},
    "gus_terminal_ignored/rl.ipynb": {"q_learning_update": ("partial", "test_terminal", "terminal")},
    "nia_log_of_sigmoid/logistic_regression.ipynb": {"bce_with_logits": ("partial", "test_large_logits", "overflow")},
    "oto_adagrad_that_forgets/optimizers.ipynb": {
        "sgd_momentum_step": ("passed", None, None),
        "adagrad_step": ("failed", "test_trajectory", "decaying average"),
        "rmsprop_step": ("partial", "test_eps_outside_sqrt", "inside the square root"),
    },
    "jo_heads_scaled_by_d_model/transformer.ipynb": {
        "layer_norm": ("passed", None, None),
        "multi_head_attention": ("failed", "test_heads", "sqrt(d_model)"),
    },
    "nora_reset_gate_after_product/gated_rnn.ipynb": {
        "gru_cell": ("partial", "test_values", "after the product"),  # its gates still saturate right
        "lstm_cell": ("passed", None, None),
    },
    "rosa_nothing_frozen/transfer_learning.ipynb": {
        "replace_classifier": ("partial", "test_frozen", "whole VGG left trainable"),
    },
    "kai_sarsa_bootstraps_from_max/planning.ipynb": {
        "sarsa_update": ("partial", "test_training", "Q-learning"),
        "value_iteration": ("passed", None, None),
    },
    "lea_one_sided_padding/conv_layers.ipynb": {"conv2d": ("partial", "test_stride_padding", "one side"),
                                                "pool2d": ("passed", None, None)},
    "max_rebound_statistics/batch_norm.ipynb": {"batch_norm": ("partial", "test_running_statistics", "rebound")},
}


@pytest.mark.parametrize("example", sorted(EXPECTED_EXAMPLES))
def test_example_submissions_get_the_outcome_they_deserve(example: str) -> None:
    result = grade_notebook(EXAMPLES / example)
    by_name = {e.name: e for e in result.exercises}
    for name, (status, failing, word) in EXPECTED_EXAMPLES[example].items():
        exercise = by_name[name]
        assert exercise.status == status, (name, exercise.status, exercise.message,
                                           [(t.name, t.message) for t in exercise.tests if not t.passed])
        if status == "forbidden":
            assert exercise.score == 0 and word in exercise.message
        if failing:
            test = next(t for t in exercise.tests if t.name == failing)
            assert not test.passed and word.lower() in test.message.lower(), test.message


def _with_solution_code(assignment: str, code: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(_notebook(assignment, "assignments"), as_version=4)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in code:
            cell.source = code[grade_id]
    return nb


GOOD_SOFTMAX = "def softmax(X):\n    E = torch.exp(X - X.max(dim=-1, keepdim=True).values)\n    return E / E.sum(dim=-1, keepdim=True)\n"
GOOD_CE = "def cross_entropy(y_hat, y):\n    return -torch.log(y_hat[range(len(y_hat)), y])\n"


def _grade(tmp_path: Path, nb: nbformat.NotebookNode, name: str = "linear_models.ipynb"):
    path = tmp_path / name
    nbformat.write(nb, path)
    return {e.name: e for e in grade_notebook(path).exercises}, path


def test_magics_shell_lines_and_prints_do_not_break_grading(tmp_path: Path) -> None:
    noisy = "%matplotlib inline\n!pip install nothing\nprint('x' * 5_000_000)\n" + GOOD_SOFTMAX
    results, _ = _grade(tmp_path, _with_solution_code("01_linear_models", {"softmax": noisy, "cross_entropy": GOOD_CE}))
    assert results["softmax"].status == "passed" and results["cross_entropy"].status == "passed"


def test_syntax_error_costs_only_its_own_cell(tmp_path: Path) -> None:
    broken = "def softmax(X):\n    return X +\n"
    nb = _with_solution_code("01_linear_models", {"softmax": broken, "cross_entropy": GOOD_CE})
    path = tmp_path / "linear_models.ipynb"
    nbformat.write(nb, path)
    result = grade_notebook(path)
    by_name = {e.name: e for e in result.exercises}
    assert by_name["cross_entropy"].status == "passed"
    assert by_name["softmax"].score == 0
    assert any("SyntaxError" in line for line in result.errors), result.errors


def test_missing_function_and_wrong_signature(tmp_path: Path) -> None:
    code = {"softmax": "def soft_max(X):\n    return X\n", "cross_entropy": "def cross_entropy(y_hat):\n    return y_hat\n"}
    results, _ = _grade(tmp_path, _with_solution_code("01_linear_models", code))
    assert results["softmax"].status == "not_attempted" and "not defined" in results["softmax"].message
    assert results["cross_entropy"].score == 0
    assert "does not match the contract" in results["cross_entropy"].message


def test_exit_at_top_level_is_skipped_and_the_rest_is_graded(tmp_path: Path) -> None:
    nb = _with_solution_code("01_linear_models", {"softmax": GOOD_SOFTMAX, "cross_entropy": GOOD_CE})
    nb.cells.insert(len(nb.cells), nbformat.v4.new_code_cell("import os\nos._exit(0)\n"))
    path = tmp_path / "linear_models.ipynb"
    nbformat.write(nb, path)
    result = grade_notebook(path)
    assert result.score == result.max_score
    assert any("skipped" in line for line in result.errors), result.errors


def test_notebook_without_code_is_not_attempted(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("I did not do it")])
    results, _ = _grade(tmp_path, nb)
    assert {e.status for e in results.values()} == {"not_attempted"}


def test_check_runs_public_cases_unofficially() -> None:
    result = check_notebook(_notebook("07_rl", "solutions"))
    assert not result.official
    assert result.score == result.max_score == len(registry.BY_NAME["q_learning_update"].public_cases)


def test_cli_json_schema(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(EXAMPLES / "sam_not_started" / "linear_models.ipynb"),
                           "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) >= {"notebook", "score", "max_score", "exercises"}
    for exercise in data["exercises"]:
        assert set(exercise) >= {"name", "score", "max_score", "status", "tests"}
        for test in exercise["tests"]:
            assert set(test) >= {"name", "passed", "points", "max_points", "message"}
