"""Hidden tests of ``softmax(X)`` (docs/exercises.md §1): the softmax over the last dimension,
numerically stable, differentiable, for any number of batch dimensions.

Which test owns which property (one mistake loses only the tests that name it):

- ``test_values``: the values on ordinary 2-D inputs; ``test_gradient``: the VJP with respect to X;
- ``test_stability``: exact values and gradients for scores of magnitude 1e3 to 1e4 (no overflow to
  inf or underflow to 0 / 0): it alone names a missing max-subtraction;
- ``test_batch_dims``: any number of leading dimensions, q = 1, non-contiguous inputs (the
  reduction over the last dimension, kept for broadcasting);
- ``test_float32``: values and gradient computed in float32 at float32 precision;
- ``test_device``: the output's dtype and device (on meta: propagation);
- ``test_no_mutation``: X left exactly as it was (and the values right: doing nothing is not
  worth the point).
"""

from __future__ import annotations

import torch

from autograder.course.hints import (SOFTMAX_BATCH as HINT_BATCH, SOFTMAX_STABLE as HINT_STABLE,
                                     SOFTMAX_VALUES as HINT_VALUES)
from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like, has_nonfinite
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, normal, reference_output, reference_vjp,
                                       shape_text, value_and_propagation_devices, vjp_on)
from reference import softmax as reference_softmax

EXERCISE = "softmax"

#: (n, q) of the plain value and gradient tests.
SHAPE = (6, 9)
#: Scale of the ordinary inputs: rows with clear winners and close calls.
SCALE = 2.0
#: Scale of the "large magnitude" inputs: exp overflows float64 beyond about 709.
LARGE_SCALE = 1e3
#: Rows shifted this far down underflow exp to 0 in every entry (0 / 0 without max-subtraction).
FAR_NEGATIVE = -1e4
#: Scale of the float32 inputs (exp of 4 sigma stays far from float32 overflow either way).
FLOAT32_SCALE = 4.0
#: Shapes (..., q) of the batch-dimension test: several leading dimensions, q = 1, a single row.
BATCH_SHAPES = ((2, 3, 5), (2, 1, 3, 7), (4, 1), (1, 1), (7,))

HINT_GRADIENT = "use differentiable torch operations only (torch.exp, sum, max, division)"
HINT_NO_MUTATION = ("do not modify X in place (X -= m, X.exp_(), X[...] = ...): compute new tensors (X - m) "
                    "so that the caller's X is unchanged")


def _mistakes(X: torch.Tensor) -> dict[str, object]:
    """What typical wrong softmaxes return for ``X``, computed (stably) only when needed."""
    if X.dim() < 2:
        return {}
    X = X.detach().cpu().to(FLOAT64)
    return {
        "a softmax over the first dimension instead of the last (use dim=-1)":
            lambda: reference_softmax(X.movedim(0, -1)).movedim(-1, 0),
        "exp(X) divided by the sum over the whole tensor instead of over each row":
            lambda: torch.exp(X - X.max()) / torch.exp(X - X.max()).sum(),
        "exp(X) without dividing by the row sums": lambda: torch.exp(X),
    }


def test_values(student, rng, device, exercise):
    X = normal(rng, *SHAPE, scale=SCALE)
    result = student.vjp(EXERCISE, {"X": X}, device=device)
    expected = reference_output(reference_softmax, {"X": X})
    expect_close(result.output, expected.to(device), quantity=f"output for X of shape {shape_text(SHAPE)}",
                 exercise=exercise, hint=HINT_VALUES, mistakes=_mistakes(X))


def test_gradient(student, rng, device, exercise):
    X = normal(rng, *SHAPE, scale=SCALE)
    upstream = normal(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"X": X}, grad_wrt=["X"], upstream=upstream, device=device)
    expected, grads = reference_vjp(reference_softmax, {"X": X}, ["X"], upstream)
    expect_close(result.output, expected.to(device), quantity="output", exercise=exercise, hint=HINT_VALUES,
                 mistakes=_mistakes(X))
    expect_gradient(result.calls[0], "X", grads["X"].to(device), exercise=exercise, hint=HINT_GRADIENT)


def _large_inputs(rng: torch.Generator) -> torch.Tensor:
    """Rows of large positive, large negative and mixed scores, and rows far below zero."""
    X = normal(rng, *SHAPE, scale=LARGE_SCALE)
    X[0] = X[0].abs() + LARGE_SCALE  # all large positive: exp overflows
    X[1] = -X[1].abs() - LARGE_SCALE  # all large negative: exp underflows
    X[2] += FAR_NEGATIVE
    X[3, 0] = X[3, 1]  # a tie for the maximum
    return X


def test_stability(student, rng, device, exercise):
    X = _large_inputs(rng)
    upstream = normal(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"X": X}, grad_wrt=["X"], upstream=upstream, device=device)
    expected, grads = reference_vjp(reference_softmax, {"X": X}, ["X"], upstream)
    hint = HINT_STABLE if has_nonfinite(result.output) else HINT_VALUES
    expect_close(result.output, expected.to(device), quantity="output for inputs of large magnitude (|X| ~ 1e3 to 1e4)",
                 exercise=exercise, hint=hint, mistakes=_mistakes(X))
    expect_gradient(result.calls[0], "X", grads["X"].to(device), exercise=exercise, hint=HINT_STABLE,
                    case=" for inputs of large magnitude")


NON_CONTIGUOUS = ("transposed", "strided")
HINT_NON_CONTIGUOUS = ("inputs may be views with unusual strides (a transpose, a slice): use .reshape instead of "
                       ".view, and reduce with dim=-1 rather than assuming a memory layout")


def test_batch_dims(student, rng, device, exercise):
    for shape in BATCH_SHAPES:
        X = normal(rng, *shape, scale=SCALE)
        result = student.vjp(EXERCISE, {"X": X}, device=device)
        expected = reference_output(reference_softmax, {"X": X})
        expect_close(result.output, expected.to(device), quantity=f"output for X of shape {shape_text(shape)}",
                     exercise=exercise, hint=HINT_BATCH, mistakes=_mistakes(X))
    for layout in NON_CONTIGUOUS:  # a transposed or strided view: same values, other strides
        X = normal(rng, *SHAPE, scale=SCALE)
        result = student.vjp(EXERCISE, {"X": X}, device=device, layouts={"X": layout})
        expected = reference_output(reference_softmax, {"X": X})
        expect_close(result.output, expected.to(device), quantity=f"output for a non-contiguous ({layout}) X",
                     exercise=exercise, hint=HINT_NON_CONTIGUOUS)


def test_float32(student, rng, device, exercise):
    X = normal(rng, *SHAPE, scale=FLOAT32_SCALE).to(FLOAT32)
    upstream = normal(rng, *SHAPE).to(FLOAT32)
    result = student.vjp(EXERCISE, {"X": X}, grad_wrt=["X"], upstream=upstream, device=device)
    expected, grads = reference_vjp(reference_softmax, {"X": X}, ["X"], upstream)
    expect_close(result.output, expected.to(device, FLOAT32), quantity="output for float32 X", exercise=exercise,
                 hint=HINT_VALUES, mistakes=_mistakes(X))
    expect_gradient(result.calls[0], "X", grads["X"].to(device, FLOAT32), exercise=exercise, hint=HINT_GRADIENT,
                    case=" (float32)")


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            X = normal(rng, *SHAPE).to(dtype)
            result = vjp_on(student, EXERCISE, {"X": X}, where)
            if result is None:
                continue
            quantity = f"output for {dtype_text(dtype)} X on {where}"
            if where == "meta":
                expect_like(result.output, shape=SHAPE, dtype=dtype, device="meta", quantity=quantity)
            else:
                expected = reference_output(reference_softmax, {"X": X}).to(where, dtype)
                expect_close(result.output, expected, quantity=quantity, exercise=exercise, hint=HINT_VALUES,
                             mistakes=_mistakes(X))


def test_no_mutation(student, rng, device, exercise):
    X = normal(rng, *SHAPE, scale=SCALE)
    result = student.vjp(EXERCISE, {"X": X}, device=device)
    expect_equal(result.inputs_after["X"], X.to(device), quantity="X after the call", hint=HINT_NO_MUTATION)
    # leaving X alone is only worth a point when the function also does its job
    expected = reference_output(reference_softmax, {"X": X})
    expect_close(result.output, expected.to(device), quantity="output", exercise=exercise, hint=HINT_VALUES)
