"""The reference ``batch_norm`` (docs/exercises.md §11) against ``torch.nn.functional.batch_norm``.

Both modes, on ``(n, c)`` and ``(n, c, h, w)``: the output and the gradients of ``X``, ``gamma``
and ``beta`` (a vector-Jacobian product with a random upstream gradient); in training mode the
running statistics updated in place (the same tensors, new values: the unbiased variance, momentum
on the batch statistic) and without autograd history; in evaluation mode normalisation with the
running statistics, which stay exactly as they were. A float32 result is compared with torch's
float64 result on the same (upcast) inputs. Hypothesis varies shapes, modes, momentum, eps,
magnitudes and memory layouts.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.course.registry import DEFAULT_TOLERANCES, Tolerance
from reference.normalization import batch_norm

#: The same examples on every run (a CI gate must not depend on luck); REFERENCE_EXPLORE=1 draws
#: fresh ones, REFERENCE_MAX_EXAMPLES=N more of them.
PROPERTIES = settings(max_examples=int(os.environ.get("REFERENCE_MAX_EXAMPLES", "40")), deadline=None,
                      derandomize=os.environ.get("REFERENCE_EXPLORE") != "1")
DTYPES = (torch.float64, torch.float32)
DTYPE_IDS = ("float64", "float32")
EXACT = Tolerance(0.0, 0.0)
#: Shapes of X: (n, c) and (n, c, h, w), a batch of two, odd sizes, a 1x1 feature map.
SHAPES = ((8, 5), (2, 3), (4, 3, 5, 6), (2, 4, 3, 3), (5, 2, 1, 1), (1, 3, 4, 5))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tolerance(dtype: torch.dtype) -> Tolerance:
    return DEFAULT_TOLERANCES[str(dtype).removeprefix("torch.")]


def assert_close(actual, expected, tol: Tolerance, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol.rtol, atol=tol.atol, msg=lambda m: f"{what}: {m}")


def inputs(shape, dtype, g, *, layout="contiguous", scale=1.0, shift=0.0):
    """X (normal * scale + shift), gamma, beta, and running statistics of a few earlier batches."""
    c = shape[1]
    if layout == "strided":
        X = torch.randn((*shape[:-1], 2 * shape[-1]), dtype=dtype, generator=g)[..., ::2]
    elif layout == "transposed":
        X = torch.randn((*shape[:-2], shape[-1], shape[-2]), dtype=dtype, generator=g).transpose(-2, -1)
    else:
        X = torch.randn(shape, dtype=dtype, generator=g)
    return {"X": X * scale + shift, "gamma": torch.rand(c, dtype=dtype, generator=g) + 0.5,
            "beta": torch.randn(c, dtype=dtype, generator=g),
            "running_mean": torch.randn(c, dtype=dtype, generator=g) * scale + shift,
            "running_var": (torch.rand(c, dtype=dtype, generator=g) + 0.5) * scale**2}


def dims(X):
    return (0,) if X.dim() == 2 else (0, 2, 3)


def check(args, training, *, momentum=0.1, eps=1e-5, seed=0, what=""):
    """The reference against F.batch_norm (float64) on output, gradients and running statistics."""
    dtype = args["X"].dtype
    tol = tolerance(dtype)
    if dtype == torch.float32:  # X - mean loses the digits of the mean: relative error eps * |mean| / sigma
        X64, var64 = args["X"].detach().to(torch.float64), args["running_var"].detach().to(torch.float64)
        channel_dims = dims(X64)
        sigma = torch.sqrt((X64.var(dim=channel_dims, correction=0) if training else var64) + eps)
        centre = X64.mean(dim=channel_dims).abs() if training else args["running_mean"].detach().abs().to(torch.float64)
        condition = float((1 + centre / sigma).max())
        tol = Tolerance(tol.rtol * condition, tol.atol * condition)
    ours = {n: t.detach().clone() for n, t in args.items()}
    torch_ = {n: t.detach().to(torch.float64).clone() for n, t in args.items()}
    for d in (ours, torch_):
        for n in ("X", "gamma", "beta"):
            d[n].requires_grad_()
    running = ours["running_mean"], ours["running_var"]
    versions = [t._version for t in running]
    before = [t.clone() for t in running]
    Y = batch_norm(ours["X"], ours["gamma"], ours["beta"], *running, training, momentum, eps)
    Y_torch = F.batch_norm(torch_["X"], torch_["running_mean"], torch_["running_var"], torch_["gamma"],
                           torch_["beta"], training, momentum, eps)
    assert Y.dtype == dtype and Y.shape == args["X"].shape, f"{what}: output {Y.dtype} {tuple(Y.shape)}"
    assert_close(Y, Y_torch.to(dtype), tol, f"{what}: output")
    G = torch.randn(Y.shape, dtype=torch.float64, generator=gen(seed))
    grads = torch.autograd.grad(Y, [ours[n] for n in ("X", "gamma", "beta")], G.to(dtype))
    expected = torch.autograd.grad(Y_torch, [torch_[n] for n in ("X", "gamma", "beta")], G)
    # Rounding errors of the gradient of X scale with its terms, gamma / sigma * |G|, which cancel
    # almost entirely for small batches (two values per channel normalise to -1 and 1 whatever X is).
    X64 = torch_["X"].detach()
    sigma = torch.sqrt((X64.var(dim=dims(X64), correction=0) if training else torch_["running_var"]) + eps)
    terms = float((torch_["gamma"].detach().abs() / sigma).max() * G.abs().max())
    for name, grad, want in zip(("X", "gamma", "beta"), grads, expected):
        grad_tol = Tolerance(tol.rtol, tol.atol * max(1.0, terms)) if name == "X" else tol
        assert_close(grad, want.to(dtype), grad_tol, f"{what}: gradient of {name}")
    assert running[0] is ours["running_mean"] and running[1] is ours["running_var"]
    for name, t, old, version in zip(("running_mean", "running_var"), running, before, versions):
        assert t.grad_fn is None and not t.requires_grad, f"{what}: {name} records autograd history"
        if training:
            assert t._version > version, f"{what}: {name} was not updated in place"
            assert_close(t, torch_[name].to(dtype), tol, f"{what}: {name} after the call")
        else:
            assert t._version == version, f"{what}: {name} was written in evaluation mode"
            assert_close(t, old, EXACT, f"{what}: {name} in evaluation mode")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("training", (True, False), ids=("training", "evaluation"))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_norm_matches_torch(shape, training, dtype):
    if training and shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1) == 1:
        pytest.skip("one value per channel has no unbiased variance")
    check(inputs(shape, dtype, gen(1)), training, what=f"batch_norm {shape} training={training} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_batch_norm_running_statistics_over_a_trajectory(dtype):
    """Five training steps with momentum 0.3, then evaluation, as nn.BatchNorm2d does them."""
    g = gen(2)
    module = torch.nn.BatchNorm2d(3, momentum=0.3, eps=1e-3, dtype=torch.float64)
    running_mean, running_var = torch.zeros(3, dtype=dtype), torch.ones(3, dtype=dtype)
    gamma, beta = torch.rand(3, dtype=dtype, generator=g) + 0.5, torch.randn(3, dtype=dtype, generator=g)
    with torch.no_grad():
        module.weight.copy_(gamma), module.bias.copy_(beta)
    for step in range(5):
        X = torch.randn(4, 3, 5, 2, dtype=dtype, generator=g) * 2 + step
        Y = batch_norm(X, gamma, beta, running_mean, running_var, True, 0.3, 1e-3)
        assert_close(Y, module.train()(X.to(torch.float64)).to(dtype), tolerance(dtype), f"training step {step}")
    assert_close(running_mean, module.running_mean.to(dtype), tolerance(dtype), "running_mean after 5 steps")
    assert_close(running_var, module.running_var.to(dtype), tolerance(dtype), "running_var after 5 steps")
    X = torch.randn(2, 3, 5, 2, dtype=dtype, generator=g)
    with torch.no_grad():
        expected = module.eval()(X.to(torch.float64)).to(dtype)
    assert_close(batch_norm(X, gamma, beta, running_mean, running_var, False, 0.3, 1e-3), expected,
                 tolerance(dtype), "evaluation after 5 steps")


def test_batch_norm_uses_the_biased_variance_to_normalise_and_the_unbiased_one_to_track():
    X = torch.tensor([[0.0], [2.0]], dtype=torch.float64)  # mean 1, biased variance 1, unbiased 2
    rm, rv = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    Y = batch_norm(X, torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), rm, rv, True, 0.5, 0.0)
    assert_close(Y, torch.tensor([[-1.0], [1.0]], dtype=torch.float64), EXACT, "normalised with the biased variance")
    assert_close(rm, torch.tensor([0.5], dtype=torch.float64), EXACT, "running_mean = 0.5 * 0 + 0.5 * 1")
    assert_close(rv, torch.tensor([1.5], dtype=torch.float64), EXACT, "running_var = 0.5 * 1 + 0.5 * 2")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(n=st.integers(1, 6), c=st.integers(1, 4), spatial=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))),
       training=st.booleans(), momentum=st.sampled_from([0.0, 0.1, 0.5, 1.0]), eps=st.sampled_from([1e-5, 1e-2, 1.0]),
       layout=st.sampled_from(["contiguous", "transposed", "strided"]), scale=st.sampled_from([1e-2, 1.0, 1e2]),
       shift=st.sampled_from([0.0, 3.0]), seed=st.integers(0, 2**31 - 1))
@PROPERTIES
def test_batch_norm_property(dtype, n, c, spatial, training, momentum, eps, layout, scale, shift, seed):
    shape = (n, c) if spatial is None else (n, c, *spatial)
    if training and n * (spatial[0] * spatial[1] if spatial else 1) == 1:
        return  # one value per channel: torch refuses to train on it, and the contract does not say
    args = inputs(shape, dtype, gen(seed), layout=layout, scale=scale, shift=shift)
    check(args, training, momentum=momentum, eps=eps, seed=seed,
          what=f"batch_norm {shape} training={training} momentum={momentum} eps={eps} {layout} scale={scale}")


def test_outputs_stay_on_the_input_device_and_dtype():
    meta = dict(device="meta", dtype=torch.float32)
    for training in (True, False):
        running = torch.empty(3, **meta), torch.empty(3, **meta)
        Y = batch_norm(torch.empty(4, 3, 2, 2, **meta), torch.empty(3, **meta), torch.empty(3, **meta), *running, training)
        for out in (Y, *running):
            assert out.device.type == "meta" and out.dtype == torch.float32, f"result is {out.dtype} on {out.device}"


def test_inputs_other_than_the_running_statistics_are_not_mutated():
    args = inputs((4, 3, 2, 2), torch.float64, gen(3))
    before = {n: (t.clone(), t._version) for n, t in args.items() if n in ("X", "gamma", "beta")}
    leaves = {n: (t.requires_grad_() if n in before else t) for n, t in args.items()}
    for training in (True, False):
        batch_norm(*leaves.values(), training).sum().backward()
    for name, (value, version) in before.items():
        assert args[name]._version == version, f"{name} was written into"
        assert_close(args[name].detach(), value, EXACT, f"{name} after the calls")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    args = inputs((4, 3, 5, 5), torch.float32, gen(4))
    on_cuda = {n: t.cuda() for n, t in args.items()}
    for training in (True, False):
        Y = batch_norm(*on_cuda.values(), training)
        assert Y.device.type == "cuda", f"batch_norm returned a tensor on {Y.device}"
        assert_close(Y.cpu(), batch_norm(*args.values(), training), tolerance(torch.float32), "batch_norm on CUDA vs CPU")
    for name in ("running_mean", "running_var"):
        assert_close(on_cuda[name].cpu(), args[name], tolerance(torch.float32), f"{name} on CUDA vs CPU")
