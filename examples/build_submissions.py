"""Builds examples/submissions/ from the released notebooks: one perfect student and several with
the typical mistakes each exercise is known for. `make demo` grades them.

Every answer is a function of the corpus of known implementations
(``tests/fixtures/implementations/<exercise>.py``, the one copy the tests and benchmarks read
too), renamed to the exercise's name.

Run: .venv/bin/python examples/build_submissions.py   (the notebooks are committed; re-run after
regenerating assignments/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent  # the repository
OUT = ROOT / "examples" / "submissions"

# (student folder, assignment, {exercise: function of the corpus}); exercises left out keep the
# released stub.
STUDENTS = [
    ("ada_perfect", "01_linear_models", {"softmax": "correct_max_subtraction", "cross_entropy": "correct_range_indexing"}),
    ("ada_perfect", "05_optimization", {"adam_step": "correct_d2l_style"}),
    ("ben_unstable_softmax", "01_linear_models", {"softmax": "bug_no_max_subtraction", "cross_entropy": "bug_mean"}),
    ("eve_forbidden_call", "01_linear_models", {"softmax": "cheat_functional", "cross_entropy": "correct_range_indexing"}),
    ("sam_not_started", "01_linear_models", {}),
    ("dan_no_rescale", "02_mlp", {"dropout": "bug_no_rescale"}),
    ("cleo_flipped_kernel", "03_cnn", {"corr2d": "bug_flipped_kernel"}),
    ("ivy_norm_after_clip", "04_rnn", {"clip_grad": "bug_returns_clipped_norm"}),
    ("hana_eps_inside_sqrt", "05_optimization", {"adam_step": "bug_eps_inside_sqrt"}),
    ("finn_inverted_mask", "06_attention", {"self_attention": "bug_inverted_mask"}),
    ("gus_terminal_ignored", "07_rl", {"q_learning_update": "bug_ignores_done"}),
    ("jo_heads_scaled_by_d_model", "14_transformer",
     {"layer_norm": "correct_mean_and_var", "multi_head_attention": "bug_scale_by_d_model"}),
    ("kai_sarsa_bootstraps_from_max", "15_planning",
     {"sarsa_update": "bug_max_bootstrap", "value_iteration": "correct_matmul"}),
    ("lea_one_sided_padding", "08_conv_layers", {"conv2d": "bug_padding_one_side", "pool2d": "correct_d2l_loops"}),
    ("max_rebound_statistics", "09_batch_norm", {"batch_norm": "bug_rebound_statistics"}),
    ("nia_log_of_sigmoid", "12_logistic_regression", {"bce_with_logits": "bug_log_sigmoid"}),
    ("oto_adagrad_that_forgets", "13_optimizers",
     {"sgd_momentum_step": "correct_in_place_methods", "adagrad_step": "bug_decaying_average",
      "rmsprop_step": "bug_eps_inside_sqrt"}),
    ("nora_reset_gate_after_product", "10_gated_rnn",
     {"gru_cell": "bug_reset_after_product", "lstm_cell": "correct_d2l"}),
    ("rosa_nothing_frozen", "11_transfer_learning", {"replace_classifier": "bug_whole_vgg_trainable"}),
]


def build() -> list[Path]:
    from autograder.course import registry
    from bench.submissions import implementations

    written = []
    for student, assignment, answers in STUDENTS:
        notebook = registry.assignments()[assignment][0].notebook
        nb = nbformat.read(ROOT / "assignments" / assignment / notebook, as_version=4)
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = implementations(grade_id)[answers[grade_id]].strip() + "\n"
        target = OUT / student / notebook
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written


if __name__ == "__main__":
    for path in build():
        print(path.relative_to(ROOT))
