"""Hidden tests of ``bce_with_logits(z, y)`` (docs/exercises.md §16): the per-element binary
cross-entropy of logits, stable and exact for |z| up to 1e4, differentiable with respect to z.

Ordinary logits (|z| of a few units) are where every correct formula agrees, so the value and
gradient tests name the sign slips and swapped targets; logits of 30 to 1e4 are where
log(sigmoid(z)) overflows, so only the stability test needs the stable form. Gradients are never
taken at exactly z = 0, the kink of max(z, 0) and |z| where autograd may pick a one-sided
derivative (random logits are never exactly 0).
"""

from __future__ import annotations

import torch

from autograder.course.registry import Tolerance
from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like, has_nonfinite
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, normal, reference_output, reference_vjp,
                                       shape_text, uniform, value_and_propagation_devices, vjp_on)
from reference import bce_with_logits as reference_bce

EXERCISE = "bce_with_logits"

#: Shape and scale of the ordinary inputs: confident and uncertain logits, no overflow anywhere.
SHAPE = (6, 7)
SCALE = 3.0
#: Large logits: from where sigmoid(z) rounds to 1 in float64 (about 37) up to the contract's 1e4.
LARGE_LOW, LARGE_HIGH = 30.0, 1e4
#: Fixed large logits, both signs, always among the large inputs.
LARGE_FIXED = (40.0, 100.0, 750.0, 1e3, 1e4)
#: Ordinary logits mixed in, so that only a loss right everywhere passes (max(z, 0) - y z alone, the
#: large-logit limit, is not the loss).
MODERATE_FIXED = (0.5, 2.0, 5.0)
#: Scale of the float32 inputs: float32's sigmoid keeps 1 - sigmoid(z) to 6 digits up to |z| of about 5, so
#: the dtype is tested without charging the unstable formula twice (the stability test does).
FLOAT32_SCALE = 1.5
#: Shapes of the per-element test: any number of dimensions, a single element, 0-d.
SHAPES = ((5,), (2, 3, 4), (1,), (4, 1, 5), ())
#: float32 carries about 7 digits: max(z, 0) - y z at |z| = 1e4 with y near 1 cancels down to
#: ~1, so a correct float32 loss may be off by a few units in the 7th digit of |z| there.
FLOAT32_LARGE = Tolerance(rtol=1.3e-6, atol=4 * 2.0**-23 * LARGE_HIGH)

HINT_VALUES = ("loss = max(z, 0) - y * z + log(1 + exp(-|z|)) element-wise (from -(y log sigmoid(z) + (1 - y) "
               "log(1 - sigmoid(z)))); check each sign against z = 0, where every target costs log 2")
HINT_GRADIENT = ("build the loss from z with differentiable torch operations (torch.clamp or torch.maximum, "
                 "torch.abs, torch.exp, torch.log1p); its gradient is then sigmoid(z) - y")
HINT_STABLE = ("log(sigmoid(z)) and log(1 - sigmoid(z)) overflow: sigmoid(z) rounds to exactly 1 or 0 for large |z| "
               "(log 0 = -inf, 0 * -inf = nan). Use max(z, 0) - y * z + log1p(exp(-|z|)): exp(-|z|) never "
               "overflows and log1p never sees 0")
HINT_SHAPE = ("return one loss per element, the same shape as z: no .mean() or .sum() (the training loop "
              "averages), and no reshaping")
HINT_FLOAT32 = "keep z's dtype: no float64 constants or torch.tensor(..., dtype=torch.float64) on the way"
HINT_NO_MUTATION = ("do not modify z or y in place (z.abs_(), z.clamp_(...), z[...] = ...): compute new tensors so "
                    "that the caller's inputs are unchanged")


def _mistakes(z: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
    """What typical wrong losses return for (z, y), in float64 (computed only when needed)."""
    z, y = z.detach().cpu().to(FLOAT64), y.detach().cpu().to(FLOAT64)
    relu, tail = z.clamp(min=0), torch.log1p(torch.exp(-z.abs()))
    return {
        "max(z, 0) + y z + log(1 + exp(-|z|)): the y z term is subtracted": lambda: relu + y * z + tail,
        "max(z, 0) - y z - log(1 + exp(-|z|)): the log term is added": lambda: relu - y * z - tail,
        "max(-z, 0) - y z + log(1 + exp(-|z|)): it is max(z, 0), not max(-z, 0)": lambda: (-z).clamp(min=0) - y * z + tail,
        "the loss of -z (or of the other class): the target y goes with log sigmoid(z), 1 - y with log(1 - sigmoid(z))":
            lambda: reference_bce(z, 1 - y),
        "sigmoid applied twice: bce_with_logits takes logits z, not probabilities": lambda: reference_bce(torch.sigmoid(z), y),
        "the mean over all elements instead of one loss per element": lambda: reference_bce(z, y).mean(),
        "the sum over all elements instead of one loss per element": lambda: reference_bce(z, y).sum(),
        "each log clamped at -100 (as torch.nn.BCELoss does): not exact for large logits":
            lambda: -(y * torch.log(torch.sigmoid(z)).clamp(min=-100) + (1 - y) * torch.log(1 - torch.sigmoid(z)).clamp(min=-100)),
    }


def _targets(rng: torch.Generator, *shape: int) -> torch.Tensor:
    """Soft targets in [0, 1] with about a third of the entries hard labels 0 or 1."""
    y = uniform(rng, 0.0, 1.0, *shape)
    hard = uniform(rng, 0.0, 1.0, *shape) < 1 / 3
    return torch.where(hard, y.round(), y)


def _large(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of magnitude LARGE_LOW..LARGE_HIGH (log-uniform) of both signs, the fixed large and moderate
    ones included, each with hard targets 0 and 1 and soft ones, among them targets near 0 and 1."""
    n = len(LARGE_FIXED)
    magnitudes = torch.exp(uniform(rng, torch.log(torch.tensor(LARGE_LOW)).item(), torch.log(torch.tensor(LARGE_HIGH)).item(), 3 * n))
    magnitudes = torch.cat([torch.tensor(LARGE_FIXED + MODERATE_FIXED, dtype=FLOAT64), magnitudes])
    z = torch.cat([magnitudes, -magnitudes])
    columns = [torch.zeros_like(z), torch.ones_like(z), uniform(rng, 0.0, 1.0, len(z)), 1 - uniform(rng, 1e-4, 1e-3, len(z))]
    return z[:, None].expand(-1, len(columns)).contiguous(), torch.stack(columns, dim=1)


def _check_values(result, z, y, device, exercise, quantity, *, hint=HINT_VALUES, tol=None, dtype=FLOAT64):
    expected = reference_output(reference_bce, {"z": z, "y": y}).to(device, dtype)
    if has_nonfinite(result.output):
        hint = HINT_STABLE
    expect_close(result.output, expected, quantity=quantity, exercise=exercise, hint=hint, tol=tol,
                 mistakes=_mistakes(z, y))


def test_values(student, rng, device, exercise):
    z, y = normal(rng, *SHAPE, scale=SCALE), _targets(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"z": z, "y": y}, device=device)
    _check_values(result, z, y, device, exercise, f"loss for z of shape {shape_text(SHAPE)}")


def test_gradient(student, rng, device, exercise):
    z, y = normal(rng, *SHAPE, scale=SCALE), _targets(rng, *SHAPE)
    upstream = normal(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"z": z, "y": y}, grad_wrt=["z"], upstream=upstream, device=device)
    _check_values(result, z, y, device, exercise, "loss")
    _, grads = reference_vjp(reference_bce, {"z": z, "y": y}, ["z"], upstream)
    expect_gradient(result.calls[0], "z", grads["z"].to(device), exercise=exercise, hint=HINT_GRADIENT)


def test_large_logits(student, rng, device, exercise):
    z, y = _large(rng)
    upstream = normal(rng, *z.shape)
    for dtype, tol in ((FLOAT64, None), (FLOAT32, FLOAT32_LARGE)):
        args = {"z": z.to(dtype), "y": y.to(dtype)}
        result = student.vjp(EXERCISE, args, grad_wrt=["z"], upstream=upstream.to(dtype), device=device)
        _check_values(result, args["z"], args["y"], device, exercise,
                      f"{dtype_text(dtype)} loss for logits of magnitude up to {LARGE_HIGH:g}",
                      hint=HINT_STABLE, tol=tol, dtype=dtype)
        _, grads = reference_vjp(reference_bce, args, ["z"], upstream.to(dtype))
        expect_gradient(result.calls[0], "z", grads["z"].to(device, dtype), exercise=exercise, hint=HINT_STABLE,
                        tol=tol, case=f" ({dtype_text(dtype)}, logits of magnitude up to {LARGE_HIGH:g})")


NON_CONTIGUOUS = ("transposed", "strided")
HINT_NON_CONTIGUOUS = ("inputs may be views with unusual strides (a transpose, a slice): work element-wise and use "
                       ".reshape rather than .view if you reshape at all")


def test_per_element(student, rng, device, exercise):
    for shape in SHAPES:
        z, y = normal(rng, *shape, scale=SCALE), _targets(rng, *shape)
        result = student.vjp(EXERCISE, {"z": z, "y": y}, device=device)
        _check_values(result, z, y, device, exercise, f"loss for z of shape {shape_text(shape)}", hint=HINT_SHAPE)
    for layout in NON_CONTIGUOUS:
        z, y = normal(rng, *SHAPE, scale=SCALE), _targets(rng, *SHAPE)
        result = student.vjp(EXERCISE, {"z": z, "y": y}, device=device, layouts={"z": layout, "y": layout})
        _check_values(result, z, y, device, exercise, f"loss for non-contiguous ({layout}) z and y",
                      hint=HINT_NON_CONTIGUOUS)


def test_float32(student, rng, device, exercise):
    z, y = normal(rng, *SHAPE, scale=FLOAT32_SCALE).to(FLOAT32), _targets(rng, *SHAPE).to(FLOAT32)
    upstream = normal(rng, *SHAPE).to(FLOAT32)
    result = student.vjp(EXERCISE, {"z": z, "y": y}, grad_wrt=["z"], upstream=upstream, device=device)
    _check_values(result, z, y, device, exercise, "loss for float32 z and y", hint=HINT_FLOAT32, dtype=FLOAT32)
    _, grads = reference_vjp(reference_bce, {"z": z, "y": y}, ["z"], upstream)
    expect_gradient(result.calls[0], "z", grads["z"].to(device, FLOAT32), exercise=exercise, hint=HINT_GRADIENT,
                    case=" (float32)")


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            z, y = normal(rng, *SHAPE, scale=FLOAT32_SCALE).to(dtype), _targets(rng, *SHAPE).to(dtype)
            result = vjp_on(student, EXERCISE, {"z": z, "y": y}, where)
            if result is None:
                continue
            quantity = f"loss for {dtype_text(dtype)} z and y on {where}"
            if where == "meta":
                expect_like(result.output, shape=SHAPE, dtype=dtype, device="meta", quantity=quantity)
            else:
                _check_values(result, z, y, where, exercise, quantity, dtype=dtype)


def test_no_mutation(student, rng, device, exercise):
    z, y = normal(rng, *SHAPE, scale=SCALE), _targets(rng, *SHAPE)
    upstream = normal(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"z": z, "y": y}, grad_wrt=["z"], upstream=upstream, device=device)
    expect_equal(result.inputs_after["z"], z.to(device), quantity="z after the call", hint=HINT_NO_MUTATION)
    expect_equal(result.inputs_after["y"], y.to(device), quantity="y after the call", hint=HINT_NO_MUTATION)
    # leaving the inputs alone is only worth a point when the function also does its job
    _check_values(result, z, y, device, exercise, "loss")
