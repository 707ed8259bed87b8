"""Hidden tests of ``cross_entropy(y_hat, y)`` (docs/exercises.md §2): the per-example losses
``-log(y_hat[i, y[i]])``, shape (n,), differentiable with respect to ``y_hat``.

Which test owns which property (one mistake loses only the tests that name it):

- ``test_values``, ``test_gradient``, ``test_per_example``, ``test_float32``: the values (and shape)
  of the losses and of the gradient, on probabilities bounded away from zero (``MIN_PROBABILITY``),
  where an epsilon guard such as ``-log(y_hat + 1e-8)`` changes nothing beyond the tolerance;
- ``test_small_probabilities``: exact losses of confident mistakes (probabilities down to 1e-12),
  which an epsilon guard changes by a wide margin: it alone names the guard;
- ``test_device``: the output's dtype and device (on meta: propagation) — not its values or shape,
  so returning the mean costs the value tests only;
- ``test_no_mutation``: ``y_hat`` and ``y`` left exactly as they were (any returned tensor will do).
"""

from __future__ import annotations

import torch

from autograder.course.hints import CROSS_ENTROPY_VALUES as HINT_VALUES
from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, expect_attempted, integers, normal,
                                       reference_output, reference_vjp, value_and_propagation_devices, vjp_on)
from reference import cross_entropy as reference_cross_entropy
from reference import softmax as reference_softmax

EXERCISE = "cross_entropy"

#: Examples and classes of the value and gradient tests.
N, Q = 8, 5
#: Scale of the logits the probabilities come from: some probabilities are small (large losses).
LOGIT_SCALE = 3.0
#: (n, q) of the per-example test: a single example, a single class, more examples than classes.
PER_EXAMPLE_SHAPES = ((1, 4), (5, 1), (17, 3))

HINT_PER_EXAMPLE = "return one loss per example, shape (n,): no .mean() or .sum() over the examples"
HINT_GRADIENT = "compute the loss from y_hat with differentiable torch operations (indexing, torch.log)"
HINT_NO_MUTATION = "do not modify y_hat or y in place (y_hat.log_(), y_hat[...] = ...): compute new tensors"
HINT_GUARD = ("the contract's probabilities are > 0, so -log(y_hat[i, y[i]]) needs no epsilon; an eps guard "
              "(-log(p + 1e-8), clamp(p, min=1e-8)) changes the loss of confident mistakes (p = 1e-12 gives "
              "18.4 instead of 27.6)")


#: Every probability of the value tests is at least MIN_FRACTION / q (a mixture with the uniform
#: distribution): an epsilon guard of 1e-8 then moves a loss by at most 1e-8 q / MIN_FRACTION < 1e-7.
MIN_FRACTION = 0.8
#: Probabilities of the labels in the small-probability test (confident mistakes).
SMALL_PROBABILITIES = (1e-12, 1e-9, 1e-6, 1e-4)


def _inputs(rng: torch.Generator, n: int, q: int) -> dict[str, torch.Tensor]:
    """Probabilities (rows sum to one, entries >= MIN_FRACTION / q) and labels in [0, q)."""
    y_hat = MIN_FRACTION / q + (1 - MIN_FRACTION) * reference_softmax(normal(rng, n, q, scale=LOGIT_SCALE))
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
        "-log(y_hat + eps) with a small eps guard: " + HINT_GUARD: lambda: -torch.log(picked + 1e-8),
        "-log(clamp(y_hat, min=eps)), a clamped probability: " + HINT_GUARD:
            lambda: -torch.log(picked.clamp(min=1e-8)),
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


def test_small_probabilities(student, rng, device, exercise):
    n = len(SMALL_PROBABILITIES)
    y = integers(rng, 0, Q, n)
    y_hat = torch.full((n, Q), 0.0, dtype=FLOAT64)
    for i, p in enumerate(SMALL_PROBABILITIES):
        y_hat[i] = (1 - p) / (Q - 1)
        y_hat[i, y[i]] = p
    args = {"y_hat": y_hat, "y": y}
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result, args, device, FLOAT64, exercise,
                   f"output for label probabilities {', '.join(f'{p:g}' for p in SMALL_PROBABILITIES)}",
                   hint=HINT_GUARD)


def _expect_attempted(student, rng, device, owns: str) -> None:
    """The gate of the property tests: the losses respond to the labels (a mean or a sum does too;
    zeros, or -log of one fixed column, do not)."""
    args = _inputs(rng, N, Q)
    expect_attempted(student, EXERCISE, args, {"y": (args["y"] + 1) % Q}, device=device, what="the labels y",
                     owns=owns)


def test_device(student, rng, device, propagation_devices, exercise):
    """Owns the output's dtype and device; values and shape are the value tests'."""
    _expect_attempted(student, rng, device, "the output's dtype and device")
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            args = _inputs(rng, N, Q)
            args["y_hat"] = args["y_hat"].to(dtype)
            result = vjp_on(student, EXERCISE, args, where)
            if result is None:
                continue
            output = result.output
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else (N,)
            expect_like(output, shape=shape, dtype=dtype, device=where,
                        quantity=f"output for {dtype_text(dtype)} y_hat on {where}")


def test_no_mutation(student, rng, device, exercise):
    """Owns: y_hat and y left as they were. Any returned tensor that depends on the labels will do
    (values are the value tests')."""
    _expect_attempted(student, rng, device, "leaving y_hat and y unchanged")
    args = _inputs(rng, N, Q)
    result = student.vjp(EXERCISE, args, device=device)
    output = result.output
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else (N,)
    expect_like(output, shape=shape, dtype=FLOAT64, device=device, quantity="output")
    for name in ("y_hat", "y"):
        expect_equal(result.inputs_after.get(name), args[name].to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
