"""Hidden tests of ``corr2d(X, K)`` (docs/exercises.md §3): the 2-D cross-correlation
``Y[i, j] = sum(X[i:i+kh, j:j+kw] * K)`` of shape (h - kh + 1, w - kw + 1), kernel not flipped,
differentiable with respect to ``X`` and ``K``.

Which test owns which property (one mistake loses only the tests that name it):

- ``test_values``, ``test_not_flipped``, ``test_shapes``: the output's values and shape, compared at
  the precision of the dtype the output has (a float32 ``Y`` from ``torch.zeros(shape)`` without
  ``dtype=`` is judged at float32's tolerance here: its dtype is ``test_device``'s);
- ``test_gradient_X``, ``test_gradient_K``: the vector-Jacobian products, likewise;
- ``test_float32``: float32 inputs give float32 values and gradients;
- ``test_device``: the output's dtype and device (the input's), on the CPU, GPU and meta;
- ``test_no_mutation``: X and K left exactly as they were.
"""

from __future__ import annotations

import torch

from autograder.course.hints import CORR2D_VALUES as HINT_VALUES
from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like, looser_tolerance
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, expect_attempted, normal, reference_output,
                                       reference_vjp, shape_text, value_and_propagation_devices, vjp_on)
from reference import corr2d as reference_corr2d

EXERCISE = "corr2d"

#: Shapes of X (h, w) and K (kh, kw) of the value and gradient tests: nothing square, so that
#: swapped or transposed indices change the result's shape or values.
X_SHAPE, K_SHAPE = (7, 9), (3, 2)
#: Shapes of the not-flipped test.
FLIP_X_SHAPE, FLIP_K_SHAPE = (6, 6), (3, 3)
#: (X shape, K shape) of the odd-shape test: 1x1 everything, kernel as large as X (1x1 output),
#: single rows and columns, a 1x1 kernel, a wide kernel.
ODD_SHAPES = (((1, 1), (1, 1)), ((4, 5), (4, 5)), ((1, 6), (1, 2)), ((6, 1), (3, 1)), ((5, 7), (1, 1)),
              ((3, 8), (2, 6)))

HINT_GRADIENT = ("build Y from X and K with differentiable torch operations (slicing, *, sum, torch.stack); "
                 "writing into a preallocated Y (Y[i, j] = ...) is fine, .item() or torch.tensor(...) are not")
HINT_SHAPES = ("Y has shape (h - kh + 1, w - kw + 1): loop over range(X.shape[0] - K.shape[0] + 1) and "
               "range(X.shape[1] - K.shape[1] + 1) and take the window X[i:i + kh, j:j + kw]")


def _inputs(rng: torch.Generator, x_shape, k_shape) -> dict[str, torch.Tensor]:
    return {"X": normal(rng, *x_shape), "K": normal(rng, *k_shape)}


def _mistakes(X: torch.Tensor, K: torch.Tensor) -> dict[str, object]:
    X, K = X.detach().cpu().to(FLOAT64), K.detach().cpu().to(FLOAT64)
    return {
        "the kernel flipped, i.e. a convolution: cross-correlation uses K as it is (K[a, b] multiplies "
        "X[i + a, j + b])": lambda: reference_corr2d(X, K.flip(0, 1)),
        "the kernel flipped upside down (K.flip(0)): use K as it is": lambda: reference_corr2d(X, K.flip(0)),
        "the kernel flipped left to right (K.flip(1)): use K as it is": lambda: reference_corr2d(X, K.flip(1)),
        "the kernel transposed (K.T): K[a, b] multiplies X[i + a, j + b]": lambda: reference_corr2d(X, K.T),
        "loops that stop one position short: Y has h - kh + 1 rows and w - kw + 1 columns":
            lambda: reference_corr2d(X[:-1, :-1], K),
    }


def _expect_output(result, args, where, dtype, exercise, quantity, hint=HINT_VALUES, strict_dtype=False):
    expected = reference_output(reference_corr2d, args).to(where, dtype)
    expect_close(result.output, expected, quantity=quantity, exercise=exercise, hint=hint,
                 mistakes=_mistakes(args["X"], args["K"]), strict_dtype=strict_dtype)


def _shapes(args) -> str:
    return f"X of shape {shape_text(args['X'].shape)} and K of shape {shape_text(args['K'].shape)}"


def test_values(student, rng, device, exercise):
    args = _inputs(rng, X_SHAPE, K_SHAPE)
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for {_shapes(args)}")


def _gradient_test(student, rng, device, exercise, name):
    args = _inputs(rng, X_SHAPE, K_SHAPE)
    out_shape = (X_SHAPE[0] - K_SHAPE[0] + 1, X_SHAPE[1] - K_SHAPE[1] + 1)
    upstream = normal(rng, *out_shape)
    result = student.vjp(EXERCISE, args, grad_wrt=["X", "K"], upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for {_shapes(args)}")
    _, grads = reference_vjp(reference_corr2d, args, ["X", "K"], upstream)
    output = result.output
    # computed at the output's precision (a float32 Y): gradients are judged at that precision too
    tol = (looser_tolerance(output.dtype, FLOAT64, exercise)
           if isinstance(output, torch.Tensor) and output.is_floating_point() else None)
    expect_gradient(result.calls[0], name, grads[name].to(device), tol=tol, exercise=exercise, hint=HINT_GRADIENT)


def test_gradient_X(student, rng, device, exercise):
    _gradient_test(student, rng, device, exercise, "X")


def test_gradient_K(student, rng, device, exercise):
    _gradient_test(student, rng, device, exercise, "K")


def test_not_flipped(student, rng, device, exercise):
    args = _inputs(rng, FLIP_X_SHAPE, FLIP_K_SHAPE)
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for a square kernel, {_shapes(args)}",
                   hint="cross-correlation does not flip the kernel: Y[i, j] = sum_ab X[i + a, j + b] * K[a, b]")


def test_shapes(student, rng, device, exercise):
    for x_shape, k_shape in ODD_SHAPES:
        args = _inputs(rng, x_shape, k_shape)
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for {_shapes(args)}", hint=HINT_SHAPES)
    for layout in ("transposed", "strided"):  # views with other strides: same values
        args = _inputs(rng, X_SHAPE, K_SHAPE)
        result = student.vjp(EXERCISE, args, device=device, layouts={"X": layout, "K": layout})
        _expect_output(result, args, device, FLOAT64, exercise, f"output for non-contiguous ({layout}) X and K",
                       hint="inputs may be views with unusual strides: use .reshape rather than .view")


def test_float32(student, rng, device, exercise):
    args = {k: v.to(FLOAT32) for k, v in _inputs(rng, X_SHAPE, K_SHAPE).items()}
    out_shape = (X_SHAPE[0] - K_SHAPE[0] + 1, X_SHAPE[1] - K_SHAPE[1] + 1)
    upstream = normal(rng, *out_shape).to(FLOAT32)
    result = student.vjp(EXERCISE, args, grad_wrt=["X", "K"], upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT32, exercise, "output for float32 X and K")
    _, grads = reference_vjp(reference_corr2d, args, ["X", "K"], upstream)
    for name in ("X", "K"):
        expect_gradient(result.calls[0], name, grads[name].to(device, FLOAT32), exercise=exercise,
                        hint=HINT_GRADIENT, case=" (float32)")


def test_device(student, rng, device, propagation_devices, exercise):
    out_shape = (X_SHAPE[0] - K_SHAPE[0] + 1, X_SHAPE[1] - K_SHAPE[1] + 1)
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            args = {k: v.to(dtype) for k, v in _inputs(rng, X_SHAPE, K_SHAPE).items()}
            result = vjp_on(student, EXERCISE, args, where)
            if result is None:
                continue
            quantity = f"output for {dtype_text(dtype)} X and K on {where}"
            if where == "meta":
                expect_like(result.output, shape=out_shape, dtype=dtype, device="meta", quantity=quantity,
                            hint=HINT_SHAPES)
            else:
                _expect_output(result, args, where, dtype, exercise, quantity, strict_dtype=True)


def test_no_mutation(student, rng, device, exercise):
    """Owns: X and K left as they were. Needs a returned tensor that depends on X; its values are the
    value tests'."""
    args = _inputs(rng, X_SHAPE, K_SHAPE)
    expect_attempted(student, EXERCISE, args, {"X": normal(rng, *X_SHAPE)}, device=device, what="X",
                     owns="leaving X and K unchanged")
    result = student.vjp(EXERCISE, args, device=device)
    output = result.output
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
    expect_like(output, shape=shape, dtype=output.dtype if isinstance(output, torch.Tensor) else FLOAT64,
                device=device, quantity="output")
    for name in ("X", "K"):
        expect_equal(result.inputs_after.get(name), args[name].to(device), quantity=f"{name} after the call",
                     hint="leave X and K as they are: write the result into a new tensor (Y), never into X or K")
