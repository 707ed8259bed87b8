"""Hidden tests of ``layer_norm(X, gamma, beta, eps=1e-5)`` (docs/exercises.md §12): normalise every
position over the **last** dimension with the biased variance, ``gamma * (X - mu) / sqrt(var + eps)
+ beta``, like ``torch.nn.functional.layer_norm(X, (d,), gamma, beta, eps)``.

Which test owns what: ``values`` the formula (float64 and float32), ``gradients`` the VJPs of X,
gamma and beta, ``last_dimension`` the axis of the statistics, ``biased_variance`` the divisor d,
``eps`` where eps goes (inside the root) and its default, ``shapes`` batch dimensions, d = 1 and
non-contiguous inputs, ``device`` dtype/device propagation, ``no_mutation`` the inputs left alone.
"""

from __future__ import annotations

import torch

from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, normal, reference_output, reference_vjp,
                                       shape_text, uniform, value_and_propagation_devices, vjp_on)
from reference import layer_norm as reference_layer_norm

EXERCISE = "layer_norm"

#: (batch, n, d): every size different, so that statistics over the wrong axis change the result.
SHAPE = (3, 5, 7)
#: Spread and offset of ordinary inputs (float64): eps = 1e-5 placed outside the root shifts the
#: output by ~5e-6 * |X_hat|, fifty times the float64 tolerance.
SCALE, OFFSET = 2.0, 0.5
#: Spread of float32 inputs: with a variance of ~900 the eps placement moves the output by less
#: than 1e-7, far below the float32 tolerance, so a float32 test never turns on it.
FLOAT32_SCALE = 30.0
#: Tiny spreads for the eps test: the variance (~1e-6) is below eps = 1e-5, so eps dominates.
TINY_SCALE = 1e-3
#: An eps passed explicitly in the eps test (a hard-coded 1e-5 ignores it).
LARGE_EPS = 0.1
#: Shapes of the shape test: one position, d = 1 (output is beta), several leading dimensions.
BATCH_SHAPES = ((7,), (4, 1), (2, 3, 4, 5), (1, 1, 6))
NAMES = ("X", "gamma", "beta")

HINT_VALUES = ("mu = X.mean(dim=-1, keepdim=True), var = ((X - mu) ** 2).mean(dim=-1, keepdim=True); return "
               "gamma * (X - mu) / torch.sqrt(var + eps) + beta")
HINT_GRADIENT = ("compute everything with differentiable torch operations: no .detach(), .item() or .data on the mean "
                 "or the variance (they depend on X, and so does the gradient)")
HINT_DIM = ("normalise each position on its own over the features, the last dimension: mean and var with dim=-1 and "
            "keepdim=True (batch norm is the one that averages over the batch)")
HINT_BIASED = ("layer norm divides by d, not d - 1: use ((X - mu) ** 2).mean(dim=-1) or X.var(dim=-1, unbiased=False) "
               "(torch.var's default is the unbiased variance)")
HINT_EPS = ("eps goes inside the square root, sqrt(var + eps), and comes from the argument (default eps=1e-5): it "
            "matters when the variance is tiny")
HINT_SHAPES = ("reduce with dim=-1 and keepdim=True so that the statistics broadcast back over any number of leading "
               "dimensions; gamma and beta (shape (d,)) broadcast over them as they are. Inputs may be views with "
               "other strides: use .reshape, not .view")
HINT_NO_MUTATION = "do not modify X, gamma or beta in place (X -= mu, X.sub_(...)): compute new tensors"


def _inputs(rng, shape=SHAPE, *, scale=SCALE, offset=OFFSET, dtype=FLOAT64) -> dict:
    d = shape[-1]
    return {"X": (normal(rng, *shape, scale=scale) + offset).to(dtype),
            "gamma": uniform(rng, 0.5, 2.0, d).to(dtype), "beta": normal(rng, d).to(dtype)}


def _normalise(X, gamma, beta, eps, *, dims=(-1,), unbiased=False, eps_place="inside"):
    """Layer norm written out with one thing changeable: the known mistakes (float64, CPU)."""
    mu = X.mean(dim=dims, keepdim=True)
    var = X.var(dim=dims, keepdim=True, unbiased=unbiased)
    if eps_place == "inside":
        X_hat = (X - mu) / torch.sqrt(var + eps)
    elif eps_place == "outside":
        X_hat = (X - mu) / (torch.sqrt(var) + eps)
    elif eps_place == "std":  # eps added to the variance but no square root taken
        X_hat = (X - mu) / (var + eps)
    else:
        X_hat = (X - mu) / torch.sqrt(var)
    return gamma * X_hat + beta


def _mistakes(args) -> dict[str, object]:
    X, gamma, beta = (args[n].detach().cpu().to(FLOAT64) for n in NAMES)
    eps = args.get("eps", 1e-5)
    mistakes = {
        "the variance divided by d - 1 (unbiased) instead of d: " + HINT_BIASED:
            lambda: _normalise(X, gamma, beta, eps, unbiased=True),
        "eps added after the square root, sqrt(var) + eps, instead of inside it, sqrt(var + eps)":
            lambda: _normalise(X, gamma, beta, eps, eps_place="outside"),
        "the standard deviation never taken: (X - mu) / (var + eps) instead of / sqrt(var + eps)":
            lambda: _normalise(X, gamma, beta, eps, eps_place="std"),
        "gamma and beta swapped: return gamma * X_hat + beta": lambda: _normalise(X, beta, gamma, eps),
        "gamma and beta ignored (return gamma * X_hat + beta)": lambda: _normalise(X, torch.ones_like(gamma), 0.0, eps),
    }
    if X.dim() >= 2:
        mistakes["statistics over the first dimension (the batch), as batch norm does: " + HINT_DIM] = (
            lambda: _normalise(X, gamma, beta, eps, dims=(0,)))
        mistakes["statistics over every dimension at once instead of over the last one: " + HINT_DIM] = (
            lambda: _normalise(X, gamma, beta, eps, dims=tuple(range(X.dim()))))
    if X.dim() >= 3:
        mistakes["statistics over the positions (dim=-2) instead of the features (dim=-1): " + HINT_DIM] = (
            lambda: _normalise(X, gamma, beta, eps, dims=(-2,)))
        mistakes["statistics over the last two dimensions instead of the last one: " + HINT_DIM] = (
            lambda: _normalise(X, gamma, beta, eps, dims=(-2, -1)))
    if "eps" in args and args["eps"] != 1e-5:
        mistakes["eps fixed at 1e-5: use the eps argument"] = lambda: _normalise(X, gamma, beta, 1e-5)
    if "eps" not in args:
        mistakes["no eps at all (the default eps=1e-5 must be added to the variance)"] = (
            lambda: _normalise(X, gamma, beta, 0.0, eps_place="none"))
    return mistakes


def _expect_output(result, args, where, dtype, exercise, quantity, hint):
    expected = reference_output(reference_layer_norm, args)
    if where == "meta":
        expect_like(result.output, shape=expected.shape, dtype=dtype, device="meta", quantity=quantity)
        return
    expect_close(result.output, expected.to(where, dtype), quantity=quantity, exercise=exercise, hint=hint,
                 mistakes=_mistakes(args))


def test_values(student, rng, device, exercise):
    for dtype, scale in ((FLOAT64, SCALE), (FLOAT32, FLOAT32_SCALE)):
        args = _inputs(rng, scale=scale, dtype=dtype)
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result, args, device, dtype, exercise,
                       f"output for {dtype_text(dtype)} X of shape {shape_text(SHAPE)}", HINT_VALUES)


def test_gradients(student, rng, device, exercise):
    args = _inputs(rng)
    upstream = normal(rng, *SHAPE)
    result = student.vjp(EXERCISE, args, grad_wrt=NAMES, upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, "output", HINT_VALUES)
    _, grads = reference_vjp(reference_layer_norm, args, NAMES, upstream)
    for name in NAMES:
        expect_gradient(result.calls[0], name, grads[name].to(device), exercise=exercise, hint=HINT_GRADIENT)


def test_last_dimension(student, rng, device, exercise):
    for shape in ((6, 4), (2, 3, 5)):
        args = _inputs(rng, shape)
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for X of shape {shape_text(shape)}", HINT_DIM)


def test_biased_variance(student, rng, device, exercise):
    # d = 2 and 3: dividing by d - 1 instead of d changes the output by a factor sqrt(1/2) or sqrt(2/3)
    for shape in ((4, 2), (2, 3, 3)):
        args = _inputs(rng, shape)
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for X of shape {shape_text(shape)}",
                       HINT_BIASED)


def test_eps(student, rng, device, exercise):
    args = _inputs(rng, scale=TINY_SCALE)  # no "eps" key: the function's own default applies
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result, args, device, FLOAT64, exercise,
                   "output for rows of variance ~1e-6 with the default eps", HINT_EPS)
    args = {**_inputs(rng, scale=TINY_SCALE * 100), "eps": LARGE_EPS}
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output with eps={LARGE_EPS}", HINT_EPS)


def test_shapes(student, rng, device, exercise):
    for shape in BATCH_SHAPES:
        args = _inputs(rng, shape)
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for X of shape {shape_text(shape)}",
                       HINT_SHAPES)
    for layout in ("transposed", "strided"):
        args = _inputs(rng)
        result = student.vjp(EXERCISE, args, device=device, layouts={name: layout for name in NAMES})
        _expect_output(result, args, device, FLOAT64, exercise,
                       f"output for non-contiguous ({layout}) X, gamma and beta", HINT_SHAPES)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype, scale in ((FLOAT32, FLOAT32_SCALE), (FLOAT64, SCALE)):
            args = _inputs(rng, scale=scale, dtype=dtype)
            result = vjp_on(student, EXERCISE, args, where)
            if result is None:
                continue
            _expect_output(result, args, where, dtype, exercise, f"output for {dtype_text(dtype)} inputs on {where}",
                           HINT_VALUES)


def test_no_mutation(student, rng, device, exercise):
    args = _inputs(rng)
    result = student.vjp(EXERCISE, args, device=device)
    for name in NAMES:
        expect_equal(result.inputs_after[name], args[name].to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
    # leaving the inputs alone is only worth a point when the function also does its job
    _expect_output(result, args, device, FLOAT64, exercise, "output", HINT_VALUES)
