"""The reference ``bce_with_logits`` (docs/exercises.md §16) checked against
``torch.nn.functional.binary_cross_entropy_with_logits``.

Values and gradients (of the logits, and of the targets as torch defines them) in float64 and
float32, logits up to |z| = 1e4 of both signs, the kink at z = 0, odd shapes and memory layouts,
and Hypothesis properties: the match with torch, the symmetry l(z, y) = l(-z, 1 - y), the
gradient sigma(z) - y, non-negativity for hard targets. The helpers are test_reference.py's.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from test_reference import (
    DTYPE_IDS, EXACT, FLOAT_DTYPES, LAYOUTS, PROPERTIES, assert_close, assert_matches_oracle, f64, generator,
    random_tensor, tol, vjp_of,
)

import reference

NAME = "bce_with_logits"
#: The largest |z| the contract promises stability for.
Z_MAX = 1e4
#: Logits of every regime: zero, moderate, where exp(-|z|) underflows log(1 + .) in float32 and
#: float64, and where exp(|z|) overflows (88 in float32, 710 in float64), up to the contract's 1e4.
EXTREME_LOGITS = (0.0, 1e-8, 0.5, 3.0, 17.0, 40.0, 89.0, 100.0, 711.0, 1e3, Z_MAX)
#: Targets: hard labels, a soft one, and values near 0 and 1 where (1 - y) z and y z cancel.
TARGETS = (0.0, 1.0, 0.3, 1e-4, 0.9999)


def bce_oracle(z, y):
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")


def _extreme_grid(dtype):
    """Every (z, y) pair of ±EXTREME_LOGITS x TARGETS, as two 1-d tensors."""
    logits = sorted({s * v for v in EXTREME_LOGITS for s in (1.0, -1.0)})
    z = torch.tensor([v for v in logits for _ in TARGETS], dtype=dtype)
    y = torch.tensor([t for _ in logits for t in TARGETS], dtype=dtype)
    return z, y


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_bce_with_logits_matches_torch(dtype):
    gen = generator(21)
    for shape, scale in [((7,), 1.0), ((4, 5), 4.0), ((2, 3, 4), 30.0), ((1, 1), 1.0), ((), 2.0)]:
        z = random_tensor(shape, dtype, gen, scale=scale)
        y = torch.rand(shape, dtype=dtype, generator=gen)
        assert_matches_oracle(reference.bce_with_logits, bce_oracle, {"z": z, "y": y}, tolerance=tol(NAME, dtype),
                              what=f"bce_with_logits {dtype} {shape} scale={scale}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_bce_with_logits_is_stable_and_exact_for_large_logits(dtype):
    z, y = _extreme_grid(dtype)
    assert_matches_oracle(reference.bce_with_logits, bce_oracle, {"z": z, "y": y}, tolerance=tol(NAME, dtype),
                          what=f"bce_with_logits {dtype} |z| up to {Z_MAX:g}")
    leaves, loss = vjp_of(reference.bce_with_logits, {"z": z, "y": y})
    (grad,) = torch.autograd.grad(loss.sum(), [leaves["z"]])
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), f"not finite: loss {loss}, gradient {grad}"
    # At the extremes the loss is exactly (1 - y) z (z > 0) or -y z (z < 0), and the gradient 1 - y or -y.
    big = z.abs() == Z_MAX
    linear = torch.where(z > 0, (1 - y) * z, -y * z)
    assert_close(loss.detach()[big], linear[big], tol(NAME, dtype), "loss at |z| = 1e4")
    assert_close(grad[big], torch.where(z > 0, 1 - y, -y)[big], EXACT, "gradient at |z| = 1e4")


def test_bce_with_logits_spot_values():
    """Hand-checked values: log 2 at z = 0, exact large-logit losses, exp(-30) tails."""
    z = f64([0.0, 0.0, -1e4, 1e4, 1e4, -30.0, 30.0])
    y = f64([0.0, 1.0, 1.0, 0.0, 0.25, 0.0, 1.0])
    expected = f64([math.log(2), math.log(2), 1e4, 1e4, 7.5e3, math.log1p(math.exp(-30)), math.log1p(math.exp(-30))])
    assert_close(reference.bce_with_logits(z, y), expected, tol(NAME, torch.float64), "spot values")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_bce_with_logits_gradient_at_the_kink(dtype):
    """At z = 0 the gradient is sigma(0) - y = 1/2 - y, as torch's, not a one-sided derivative."""
    y = torch.tensor([0.0, 0.25, 1.0], dtype=dtype)
    z = torch.zeros(3, dtype=dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(reference.bce_with_logits(z, y).sum(), [z])
    assert_close(grad, 0.5 - y, EXACT, "gradient at z = 0")


@PROPERTIES
@given(
    shape=st.lists(st.integers(1, 5), max_size=3),
    scale=st.sampled_from([1e-3, 1.0, 20.0, 1e3, Z_MAX]),
    hard=st.booleans(),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_bce_with_logits_property(shape, scale, hard, layout, dtype, seed):
    gen = generator(seed)
    z = random_tensor(shape, dtype, gen, layout=layout, scale=scale).clamp(-Z_MAX, Z_MAX)
    y = torch.rand(z.shape, dtype=dtype, generator=gen)
    y = y.round() if hard else y
    what = f"bce_with_logits shape={shape} scale={scale} hard={hard} layout={layout} {dtype}"
    assert_matches_oracle(reference.bce_with_logits, bce_oracle, {"z": z, "y": y}, tolerance=tol(NAME, dtype),
                          seed=seed, what=what)
    loss = reference.bce_with_logits(z, y)
    assert loss.shape == z.shape and loss.dtype == dtype, f"{what}: {loss.dtype} {tuple(loss.shape)}"
    assert_close(reference.bce_with_logits(-z, 1 - y), loss, tol(NAME, dtype), f"{what}: l(-z, 1 - y) = l(z, y)")
    if hard:
        assert (loss >= 0).all(), f"{what}: a negative loss for hard targets"
    leaves, loss = vjp_of(reference.bce_with_logits, {"z": z, "y": y})
    (grad,) = torch.autograd.grad(loss.sum(), [leaves["z"]])
    assert_close(grad, torch.sigmoid(z) - y, tol(NAME, dtype), f"{what}: gradient sigma(z) - y")


@PROPERTIES
@given(z=st.floats(-Z_MAX, Z_MAX), y=st.floats(0.0, 1.0), dtype=st.sampled_from(FLOAT_DTYPES))
def test_bce_with_logits_scalar_property(z, y, dtype):
    """Single elements anywhere in [-1e4, 1e4] x [0, 1], Hypothesis's own edge values included."""
    inputs = {"z": torch.tensor(z, dtype=dtype), "y": torch.tensor(y, dtype=dtype)}
    assert_matches_oracle(reference.bce_with_logits, bce_oracle, inputs, tolerance=tol(NAME, dtype),
                          what=f"bce_with_logits z={z!r} y={y!r} {dtype}")


def test_bce_with_logits_keeps_meta_device_and_dtype():
    z = torch.empty(3, 4, device="meta", dtype=torch.float32)
    loss = reference.bce_with_logits(z, torch.empty_like(z))
    assert loss.device.type == "meta" and loss.dtype == torch.float32 and loss.shape == (3, 4), loss


def test_bce_with_logits_does_not_mutate_its_inputs():
    gen = generator(22)
    z, y = random_tensor((3, 4), torch.float64, gen, scale=5.0), torch.rand(3, 4, dtype=torch.float64, generator=gen)
    snapshots = {"z": (z.clone(), z._version), "y": (y.clone(), y._version)}
    leaves, loss = vjp_of(reference.bce_with_logits, {"z": z, "y": y})
    loss.sum().backward()
    for name, tensor in (("z", z), ("y", y)):
        before, version = snapshots[name]
        assert tensor._version == version, f"bce_with_logits wrote into its input {name}"
        assert_close(tensor, before, EXACT, f"input {name} after the call")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bce_with_logits_cuda_matches_cpu():
    z, y = _extreme_grid(torch.float32)
    on_cuda = reference.bce_with_logits(z.cuda(), y.cuda())
    assert on_cuda.device.type == "cuda", on_cuda.device
    assert_close(on_cuda.cpu(), reference.bce_with_logits(z, y), tol(NAME, torch.float32), "bce_with_logits on CUDA")
