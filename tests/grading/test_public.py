"""The students' self-check (autograder/grading/public.py): correct functions pass, buggy ones get a clear message."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder.grading.public import check, hidden_tests_run_by_the_grader
from autograder.course.registry import BY_NAME, EXERCISES

ROOT = Path(__file__).resolve().parents[2]


# -- correct implementations, written like a student would (not the reference) -----------------


def softmax(X):
    X_exp = torch.exp(X - X.amax(dim=-1, keepdim=True))
    return X_exp / X_exp.sum(dim=-1, keepdim=True)


def cross_entropy(y_hat, y):
    return -torch.log(y_hat[torch.arange(len(y)), y])


def dropout(X, drop_prob):
    assert 0 <= drop_prob <= 1
    if drop_prob == 1:
        return torch.zeros_like(X)
    mask = (torch.rand_like(X) >= drop_prob).to(X.dtype)
    return mask * X / (1 - drop_prob)


def corr2d(X, K):
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1), dtype=X.dtype)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i : i + h, j : j + w] * K).sum()
    return Y


def clip_grad(params, theta):
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    if norm > theta:
        for g in grads:
            g *= theta / norm
    return norm


def adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):
    with torch.no_grad():
        for p, (v, s) in zip(params, states):
            v.mul_(beta1).add_((1 - beta1) * p.grad)
            s.mul_(beta2).add_((1 - beta2) * p.grad**2)
            v_hat = v / (1 - beta1**t)
            s_hat = s / (1 - beta2**t)
            p -= lr * v_hat / (torch.sqrt(s_hat) + eps)


def self_attention(X, W_q, W_k, W_v, mask=None):
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    scores = Q @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ V


def q_learning_update(Q, s, a, r, s_next, done, alpha, gamma):
    target = r if done else r + gamma * Q[s_next].max().item()
    td_error = target - Q[s, a].item()
    Q[s, a] += alpha * td_error
    return td_error



def bce_with_logits(z, y):
    return torch.clamp(z, min=0) - z * y + torch.log1p(torch.exp(-z.abs()))


def sgd_momentum_step(params, velocities, lr, momentum):
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v.mul_(momentum).add_(p.grad)
            p -= lr * v


def adagrad_step(params, states, lr, eps=1e-10):
    with torch.no_grad():
        for p, s in zip(params, states):
            s += p.grad**2
            p -= lr * p.grad / (s.sqrt() + eps)


def rmsprop_step(params, states, lr, alpha=0.99, eps=1e-8):
    with torch.no_grad():
        for p, s in zip(params, states):
            s.mul_(alpha).add_((1 - alpha) * p.grad**2)
            p -= lr * p.grad / (s.sqrt() + eps)


CORRECT = {f.__name__: f for f in (softmax, cross_entropy, dropout, corr2d, clip_grad, adam_step, self_attention, q_learning_update,
                                   bce_with_logits, sgd_momentum_step, adagrad_step, rmsprop_step)}


def _first_correct_fixture(name: str):
    """The first ``correct_*`` function of tests/fixtures/implementations/<name>.py, or None."""
    import importlib.util

    path = ROOT / "tests" / "fixtures" / "implementations" / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"_public_fixture_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = next((getattr(module, n) for n in vars(module) if n.startswith("correct_")), None)
    if function is not None:
        function.__name__ = name  # as pasted into the notebook under the exercise's name
    return function


# exercises without a hand-written function above: the first correct fixture (written as students write)
CORRECT.update({n: f for n in BY_NAME if n not in CORRECT and (f := _first_correct_fixture(n)) is not None})


def test_every_exercise_has_a_correct_function_here():
    assert set(CORRECT) == set(BY_NAME)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_correct_function_passes_every_public_case(name, capsys):
    check(CORRECT[name])
    lines = capsys.readouterr().out.splitlines()
    for case in BY_NAME[name].public_cases:
        assert f"✓ {name}: {case.description}" in lines
    assert not any(line.startswith("✗") for line in lines)


def test_name_argument_overrides_the_function_name(capsys):
    check(lambda X: softmax(X), name="softmax")
    assert "✓ softmax: large gap" in capsys.readouterr().out


def test_unknown_name_is_explained():
    def my_softmax(X):
        return softmax(X)

    with pytest.raises(ValueError, match=r"no exercise called 'my_softmax'.*name="):
        check(my_softmax)


# -- buggy functions ------------------------------------------------------------------------


def test_unstable_softmax_fails_naming_the_case(capsys):
    def softmax(X):  # overflows: exp(1000) = inf, inf / inf = nan
        return torch.exp(X) / torch.exp(X).sum(dim=-1, keepdim=True)

    with pytest.raises(AssertionError) as failure:
        check(softmax)
    message = str(failure.value)
    assert message.startswith("softmax: public check 'large equal scores' failed on the output.")
    assert "Greatest absolute difference: nan" in message  # assert_close's own explanation
    assert "allowed" in message
    out = capsys.readouterr().out
    assert "✓ softmax: rows sum to one" in out
    assert "✗ softmax: large equal scores" in out


def test_not_implemented_is_reported_and_reraised(capsys):
    def cross_entropy(y_hat, y):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        check(cross_entropy)
    assert "✗ cross_entropy: not implemented yet" in capsys.readouterr().out


def test_other_errors_propagate_with_a_note_naming_the_case():
    def corr2d(X, K):
        return X @ K  # shapes do not match

    with pytest.raises(RuntimeError) as failure:
        check(corr2d)
    assert any("corr2d" in note and "d2l example" in note for note in failure.value.__notes__)


def test_missing_return_is_explained():
    def dropout(X, drop_prob):
        X * 1.0

    with pytest.raises(AssertionError, match=r"(?s)dropout: public check 'drop_prob = 0 keeps X' failed on the output.*None"):
        check(dropout)


def test_wrong_dtype_is_reported_like_assert_close():
    def softmax(X):
        X = X.float()
        return torch.exp(X - X.amax(-1, keepdim=True)) / torch.exp(X - X.amax(-1, keepdim=True)).sum(-1, keepdim=True)

    with pytest.raises(AssertionError, match=r"(?s)rows sum to one.*dtype.*torch.float32 != torch.float64"):
        check(softmax)


def test_flipped_kernel_fails_and_shows_the_small_tensors():
    def corr2d(X, K):
        return CORRECT["corr2d"](X, K.flip(0, 1))  # a convolution, not a cross-correlation

    with pytest.raises(AssertionError) as failure:
        check(corr2d)
    message = str(failure.value)
    assert "corr2d: public check 'd2l example' failed on the output" in message
    assert "expected: tensor([[19., 25.], [37., 43.]], dtype=torch.float64)" in message


def test_mutating_an_input_fails():
    def softmax(X):
        X -= X.amax(dim=-1, keepdim=True)
        X.exp_()
        return X / X.sum(dim=-1, keepdim=True)

    with pytest.raises(AssertionError, match=r"failed on the input `X`, which changed"):
        check(softmax)


def test_clip_grad_that_does_not_clip_in_place_fails_on_the_gradient():
    def clip_grad(params, theta):
        grads = [p.grad for p in params]
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        clipped = [g * min(1.0, theta / norm) for g in grads]  # new tensors; p.grad unchanged
        return norm, clipped

    with pytest.raises(AssertionError, match=r"(?s)norm 5 clipped to 1' failed on the returned norm.*0-d tensor"):
        check(clip_grad)

    def clip_grad(params, theta):
        grads = [p.grad for p in params]
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        [g * min(1.0, theta / norm) for g in grads]
        return norm

    with pytest.raises(AssertionError, match=r"clip_grad: public check 'norm 5 clipped to 1' failed on `params\[0\].grad`"):
        check(clip_grad)


def test_adam_without_bias_correction_fails():
    def adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):
        with torch.no_grad():
            for p, (v, s) in zip(params, states):
                v.mul_(beta1).add_((1 - beta1) * p.grad)
                s.mul_(beta2).add_((1 - beta2) * p.grad**2)
                p -= lr * v / (torch.sqrt(s) + eps)

    with pytest.raises(AssertionError, match=r"adam_step: public check .* failed on `params\[0\]` after the step"):
        check(adam_step)


def test_q_learning_ignoring_done_fails_on_the_terminal_case(capsys):
    def q_learning_update(Q, s, a, r, s_next, done, alpha, gamma):
        target = r + gamma * Q[s_next].max()
        td_error = target - Q[s, a]
        Q[s, a] += alpha * td_error
        return td_error

    with pytest.raises(AssertionError, match=r"q_learning_update: public check 'terminal step ignores the next state' failed on the returned TD error"):
        check(q_learning_update)
    assert "✓ q_learning_update: non-terminal step" in capsys.readouterr().out


def test_hidden_tests_placeholder_only_prints_the_points(capsys):
    for exercise in EXERCISES:
        hidden_tests_run_by_the_grader(exercise.name)
        out = capsys.readouterr().out
        assert f"`{exercise.name}`" in out and f"worth {exercise.points} points" in out and "sandbox" in out


def test_importable_with_torch_alone():
    """The student's kernel may lack the grader's dependencies: public.py needs only torch."""
    code = (
        "import sys, autograder.public\n"
        "heavy = {'pytest', 'nbformat', 'nbgrader', 'nbclient', 'safetensors', 'rich', 'hypothesis', 'matplotlib', 'numpy'}\n"
        "loaded = sorted(heavy & {name.split('.')[0] for name in sys.modules if not name.startswith('torch')})\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    # torch itself may import numpy; everything else must stay out.
    assert set(filter(None, done.stdout.strip().split(","))) <= {"numpy"}, done.stdout


def test_optimizer_whose_state_is_rebound_fails_on_the_state_after_two_steps():
    def sgd_momentum_step(params, velocities, lr, momentum):
        with torch.no_grad():
            for p, v in zip(params, velocities):
                v = momentum * v + p.grad  # rebinds a local name: the caller's velocity stays zero
                p -= lr * v

    with pytest.raises(AssertionError, match=r"(?s)first step: v = g, p -= lr v' failed on `velocities\[0\]` after 1 step"):
        check(sgd_momentum_step)
