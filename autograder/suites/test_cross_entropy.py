"""Hidden tests of ``cross_entropy(y_hat, y)`` (docs/exercises.md §2): the per-example losses
``-log(y_hat[i, y[i]])``, shape (n,), differentiable with respect to ``y_hat``."""

from __future__ import annotations

import torch

from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, integers, normal, reference_output,
                                       reference_vjp, value_and_propagation_devices, vjp_on)
from reference import cross_entropy as reference_cross_entropy
from reference import softmax as reference_softmax

EXERCISE = "cross_entropy"

#: Examples and classes of the value and gradient tests.
N, Q = 8, 5
#: Scale of the logits the probabilities come from: some probabilities are small (large losses).
LOGIT_SCALE = 3.0
#: (n, q) of the per-example test: a single example, a single class, more examples than classes.
PER_EXAMPLE_SHAPES = ((1, 4), (5, 1), (17, 3))

HINT_VALUES = ("pick each row's probability of its own label, y_hat[i, y[i]] (e.g. y_hat[range(len(y_hat)), y] "
               "or torch.gather), and return -log of it for every example")
HINT_PER_EXAMPLE = "return one loss per example, shape (n,): no .mean() or .sum() over the examples"
HINT_GRADIENT = "compute the loss from y_hat with differentiable torch operations (indexing, torch.log)"
HINT_NO_MUTATION = "do not modify y_hat or y in place (y_hat.log_(), y_hat[...] = ...): compute new tensors"


def _inputs(rng: torch.Generator, n: int, q: int) -> dict[str, torch.Tensor]:
    """Probabilities (rows sum to one, entries > 0) and labels in [0, q)."""
    y_hat = reference_softmax(normal(rng, n, q, scale=LOGIT_SCALE))
    return {"y_hat": y_hat, "y": integers(rng, 0, q, n)}


def _mistakes(y_hat: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
    y_hat = y_hat.detach().cpu().to(FLOAT64)
    picked = y_hat[torch.arange(len(y)), y.cpu()]
    return {
        "the mean of the losses instead of one loss per example: " + HINT_PER_EXAMPLE: lambda: -torch.log(picked).mean(),
        "the sum of the losses instead of one loss per example: " + HINT_PER_EXAMPLE: lambda: -torch.log(picked).sum(),
        "log(y_hat[i, y[i]]) without the minus sign": lambda: torch.log(picked),
        "y_hat[:, y], which takes every label's column for every row (an (n, n) matrix): "
        "use y_hat[range(len(y_hat)), y]": lambda: -torch.log(y_hat[:, y.cpu()]),
        "-log summed over all classes of each row instead of the label's probability only":
            lambda: -torch.log(y_hat).sum(dim=1),
        "a base-2 logarithm instead of the natural logarithm (torch.log)": lambda: -torch.log2(picked),
        "a base-10 logarithm instead of the natural logarithm (torch.log)": lambda: -torch.log10(picked),
    }


def _expect_output(result, args, where, dtype, exercise, quantity, hint=HINT_VALUES):
    expected = reference_output(reference_cross_entropy, args).to(where, dtype)
    expect_close(result.output, expected, quantity=quantity, exercise=exercise, hint=hint,
                 mistakes=_mistakes(args["y_hat"], args["y"]))


def test_values(student, rng, device, exercise):
    args = _inputs(rng, N, Q)
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for n={N} examples of q={Q} classes")


def test_gradient(student, rng, device, exercise):
    args = _inputs(rng, N, Q)
    upstream = normal(rng, N)
    result = student.vjp(EXERCISE, args, grad_wrt=["y_hat"], upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, "output")
    _, grads = reference_vjp(reference_cross_entropy, args, ["y_hat"], upstream)
    expect_gradient(result.calls[0], "y_hat", grads["y_hat"].to(device), exercise=exercise, hint=HINT_GRADIENT)


def test_per_example(student, rng, device, exercise):
    for n, q in PER_EXAMPLE_SHAPES:
        args = _inputs(rng, n, q)
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for n={n} examples of q={q} classes",
                       hint=HINT_PER_EXAMPLE)


def test_float32(student, rng, device, exercise):
    args = _inputs(rng, N, Q)
    args["y_hat"] = args["y_hat"].to(FLOAT32)
    upstream = normal(rng, N).to(FLOAT32)
    result = student.vjp(EXERCISE, args, grad_wrt=["y_hat"], upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT32, exercise, "output for float32 y_hat")
    _, grads = reference_vjp(reference_cross_entropy, args, ["y_hat"], upstream)
    expect_gradient(result.calls[0], "y_hat", grads["y_hat"].to(device, FLOAT32), exercise=exercise,
                    hint=HINT_GRADIENT, case=" (float32)")


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            args = _inputs(rng, N, Q)
            args["y_hat"] = args["y_hat"].to(dtype)
            result = vjp_on(student, EXERCISE, args, where)
            if result is None:
                continue
            quantity = f"output for {dtype_text(dtype)} y_hat on {where}"
            if where == "meta":
                expect_like(result.output, shape=(N,), dtype=dtype, device="meta", quantity=quantity,
                            hint=HINT_PER_EXAMPLE)
            else:
                _expect_output(result, args, where, dtype, exercise, quantity)


def test_no_mutation(student, rng, device, exercise):
    args = _inputs(rng, N, Q)
    result = student.vjp(EXERCISE, args, device=device)
    for name in ("y_hat", "y"):
        expect_equal(result.inputs_after.get(name), args[name].to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
    # leaving the inputs alone is only worth a point when the function also does its job
    _expect_output(result, args, device, FLOAT64, exercise, "output")
