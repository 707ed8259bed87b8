"""The reference ``conv2d`` and ``pool2d`` (docs/exercises.md §9-10) against PyTorch's own routines.

``conv2d`` is compared with ``torch.nn.functional.conv2d`` (stride, padding, bias), ``pool2d`` with
``max_pool2d`` and ``avg_pool2d(count_include_pad=True)``, on values and on the gradient of every
floating input (a vector-Jacobian product with a random upstream gradient), in float64 and float32.
A float32 result is compared with the routine's float64 result on the same (upcast) inputs: the
tolerance bounds the distance from the truth. The edge cases of the hidden suites (stride larger
than the kernel, padding larger than half the kernel, 1x1 kernels, a batch of one, sizes not
divisible by the stride) are listed by name; Hypothesis varies shapes, strides, padding, memory
layouts and magnitudes.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.course.registry import DEFAULT_TOLERANCES, Tolerance
from reference.conv import conv2d, pool2d

#: The same examples on every run (a CI gate must not depend on luck); REFERENCE_EXPLORE=1 draws
#: fresh ones, REFERENCE_MAX_EXAMPLES=N more of them.
PROPERTIES = settings(max_examples=int(os.environ.get("REFERENCE_MAX_EXAMPLES", "40")), deadline=None,
                      derandomize=os.environ.get("REFERENCE_EXPLORE") != "1")
DTYPES = (torch.float64, torch.float32)
DTYPE_IDS = ("float64", "float32")
LAYOUTS = ("contiguous", "transposed", "strided")

#: conv2d cases: (name, n, c_in, c_out, h, w, kh, kw, stride, padding, bias).
CONV_CASES = (
    ("plain", 2, 3, 4, 7, 8, 3, 2, 1, 0, True),
    ("no bias", 2, 3, 4, 7, 8, 3, 3, 1, 1, False),
    ("stride larger than the kernel", 2, 2, 3, 9, 10, 2, 2, 3, 0, True),
    ("padding larger than half the kernel", 1, 2, 3, 5, 6, 3, 2, 1, 2, True),
    ("padding larger than the kernel", 2, 1, 2, 4, 4, 2, 2, 2, 3, True),
    ("1x1 kernel", 3, 4, 2, 5, 6, 1, 1, 1, 0, True),
    ("1x1 kernel with stride and padding", 2, 3, 2, 5, 6, 1, 1, 2, 1, True),
    ("batch of one", 1, 3, 4, 6, 6, 3, 3, 1, 1, True),
    ("sizes not divisible by the stride", 2, 3, 2, 11, 9, 3, 3, 2, 1, True),
    ("kernel as large as the input", 2, 2, 3, 4, 5, 4, 5, 1, 0, True),
    ("one input channel", 2, 1, 3, 6, 7, 3, 3, 1, 0, True),
)

#: pool2d cases: (name, n, c, h, w, kernel_size, stride, padding). torch allows padding up to half
#: the kernel, so that every window holds at least one element of X.
POOL_CASES = (
    ("default stride", 2, 3, 8, 6, 2, None, 0),
    ("overlapping windows", 2, 3, 7, 8, 3, 1, 0),
    ("stride 2, kernel 3", 2, 2, 9, 7, 3, 2, 1),
    ("stride larger than the kernel", 2, 2, 10, 11, 2, 3, 0),
    ("half-kernel padding", 1, 3, 5, 6, 2, 2, 1),
    ("1x1 window", 2, 3, 4, 5, 1, 1, 0),
    ("1x1 window with stride", 2, 3, 7, 6, 1, 2, 0),
    ("batch of one", 1, 4, 6, 6, 3, 3, 1),
    ("sizes not divisible by the stride", 2, 3, 11, 9, 2, None, 0),
    ("window as large as the input", 2, 3, 4, 4, 4, None, 0),
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tensor(shape, dtype, g, *, layout="contiguous", scale=1.0) -> torch.Tensor:
    """Standard normal * ``scale``; ``transposed``/``strided`` give non-contiguous views."""
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        return (torch.randn((*shape[:-2], shape[-1], shape[-2]), dtype=dtype, generator=g) * scale).transpose(-2, -1)
    if layout == "strided":
        return (torch.randn((*shape[:-1], 2 * shape[-1]), dtype=dtype, generator=g) * scale)[..., ::2]
    return torch.randn(shape, dtype=dtype, generator=g) * scale


def tolerance(dtype: torch.dtype, *, scale: float = 1.0) -> Tolerance:
    """The registry's default tolerance, its atol scaled to the size of the terms summed."""
    base = DEFAULT_TOLERANCES[str(dtype).removeprefix("torch.")]
    return Tolerance(rtol=base.rtol, atol=base.atol * max(1.0, scale))


def assert_close(actual, expected, tol: Tolerance, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol.rtol, atol=tol.atol, msg=lambda m: f"{what}: {m}")


def assert_matches(fn, oracle, inputs: dict, tol: Tolerance, what: str, seed: int = 0) -> None:
    """Output and the gradient of every floating tensor input of ``fn`` match ``oracle`` run in
    float64 on the same values (rounded back to the inputs' dtype)."""
    names = [n for n, v in inputs.items() if isinstance(v, torch.Tensor)]
    dtype = inputs[names[0]].dtype
    leaves = {n: (v.detach().requires_grad_() if n in names else v) for n, v in inputs.items()}
    wide = {n: (v.detach().to(torch.float64).requires_grad_() if n in names else v) for n, v in inputs.items()}
    Y, Y_oracle = fn(**leaves), oracle(**wide)
    assert Y.dtype == dtype, f"{what}: output dtype {Y.dtype}, expected {dtype}"
    assert_close(Y, Y_oracle.to(dtype), tol, f"{what}: output")
    G = torch.randn(Y_oracle.shape, dtype=torch.float64, generator=gen(seed))
    grads = torch.autograd.grad(Y, [leaves[n] for n in names], G.to(dtype))
    expected = torch.autograd.grad(Y_oracle, [wide[n] for n in names], G)
    for name, grad, want in zip(names, grads, expected):
        assert_close(grad, want.to(dtype), tol, f"{what}: gradient of {name}")


def conv_oracle(X, K, b=None, stride=1, padding=0):
    return F.conv2d(X, K, b, stride=stride, padding=padding)


def pool_oracle(X, kernel_size, stride=None, padding=0, mode="max"):
    if mode == "max":
        return F.max_pool2d(X, kernel_size, stride, padding)
    return F.avg_pool2d(X, kernel_size, stride, padding, count_include_pad=True)


def conv_inputs(n, c_in, c_out, h, w, kh, kw, stride, padding, bias, dtype, g, layout="contiguous", scale=1.0):
    return {"X": tensor((n, c_in, h, w), dtype, g, layout=layout, scale=scale),
            "K": tensor((c_out, c_in, kh, kw), dtype, g, layout=layout, scale=scale),
            "b": tensor((c_out,), dtype, g, layout=layout) if bias else None,
            "stride": stride, "padding": padding}


# ------------------------------------------------------------------------------------------- conv2d

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c[0])
def test_conv2d_matches_torch(case, dtype):
    name, *shape = case
    inputs = conv_inputs(*shape, dtype, gen(1))
    assert_matches(conv2d, conv_oracle, inputs, tolerance(dtype, scale=shape[1]), f"conv2d {name} {dtype}")


def test_conv2d_output_size_formula():
    X, K = torch.zeros(1, 1, 11, 9, dtype=torch.float64), torch.zeros(1, 1, 3, 2, dtype=torch.float64)
    for stride in (1, 2, 3, 5):
        for padding in (0, 1, 2, 4):
            h_out, w_out = (11 + 2 * padding - 3) // stride + 1, (9 + 2 * padding - 2) // stride + 1
            shape = tuple(conv2d(X, K, stride=stride, padding=padding).shape)
            assert shape == (1, 1, h_out, w_out), f"stride={stride} padding={padding}: shape {shape}"


def test_conv2d_sums_over_channels_and_does_not_flip():
    # two input channels, a kernel that picks X[c=0, i, j] and X[c=1, i, j + 1]
    X = torch.arange(2 * 2 * 3, dtype=torch.float64).reshape(1, 2, 2, 3)
    K = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    K[0, 0, 0, 0], K[0, 1, 0, 1] = 1.0, 10.0
    expected = X[:, 0, :, :2] + 10 * X[:, 1, :, 1:]
    assert_close(conv2d(X, K), expected[:, None], Tolerance(0.0, 0.0), "conv2d channel sum")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(n=st.integers(1, 3), c_in=st.integers(1, 3), c_out=st.integers(1, 3), h=st.integers(1, 9),
       w=st.integers(1, 9), data=st.data(), bias=st.booleans(), layout=st.sampled_from(LAYOUTS),
       scale=st.sampled_from([1e-3, 1.0, 30.0]), seed=st.integers(0, 2**31 - 1))
@PROPERTIES
def test_conv2d_property(dtype, n, c_in, c_out, h, w, data, bias, layout, scale, seed):
    padding = data.draw(st.integers(0, 3), label="padding")
    kh = data.draw(st.integers(1, h + 2 * padding), label="kh")
    kw = data.draw(st.integers(1, w + 2 * padding), label="kw")
    stride = data.draw(st.integers(1, 4), label="stride")
    inputs = conv_inputs(n, c_in, c_out, h, w, kh, kw, stride, padding, bias, dtype, gen(seed), layout, scale)
    tol = tolerance(dtype, scale=scale * scale * c_in * kh * kw)
    assert_matches(conv2d, conv_oracle, inputs, tol, f"conv2d {inputs['X'].shape} {inputs['K'].shape} "
                   f"stride={stride} padding={padding} {layout} scale={scale}", seed)


# ------------------------------------------------------------------------------------------- pool2d

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("mode", ("max", "avg"))
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c[0])
def test_pool2d_matches_torch(case, mode, dtype):
    name, n, c, h, w, k, stride, padding = case
    inputs = {"X": tensor((n, c, h, w), dtype, gen(2)), "kernel_size": k, "stride": stride, "padding": padding,
              "mode": mode}
    assert_matches(pool2d, pool_oracle, inputs, tolerance(dtype), f"pool2d {mode} {name} {dtype}")


def test_pool2d_stride_defaults_to_the_kernel_size():
    X = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    assert_close(pool2d(X, 2), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]], dtype=torch.float64),
                 Tolerance(0.0, 0.0), "max pooling 2x2 windows side by side")
    assert_close(pool2d(X, 2, mode="avg"), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]], dtype=torch.float64),
                 Tolerance(0.0, 0.0), "average pooling 2x2 windows side by side")


def test_pool2d_padding_never_wins_a_max_and_counts_in_the_average():
    X = -torch.ones(1, 1, 2, 2, dtype=torch.float64)
    assert_close(pool2d(X, 2, 1, 1), -torch.ones(1, 1, 3, 3, dtype=torch.float64), Tolerance(0.0, 0.0),
                 "max pooling of negative values with padding")
    expected = -torch.tensor([[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]], dtype=torch.float64) / 4
    assert_close(pool2d(X, 2, 1, 1, "avg"), expected, Tolerance(0.0, 0.0), "average pooling with padding")


def test_pool2d_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        pool2d(torch.zeros(1, 1, 2, 2), 2, mode="min")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), data=st.data(),
       mode=st.sampled_from(["max", "avg"]), layout=st.sampled_from(LAYOUTS),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), seed=st.integers(0, 2**31 - 1))
@PROPERTIES
def test_pool2d_property(dtype, n, c, h, w, data, mode, layout, scale, seed):
    k = data.draw(st.integers(1, min(h, w)), label="kernel_size")
    padding = data.draw(st.integers(0, k // 2), label="padding")
    stride = data.draw(st.one_of(st.none(), st.integers(1, 4)), label="stride")
    X = tensor((n, c, h, w), dtype, gen(seed), layout=layout, scale=scale)
    inputs = {"X": X, "kernel_size": k, "stride": stride, "padding": padding, "mode": mode}
    assert_matches(pool2d, pool_oracle, inputs, tolerance(dtype, scale=scale),
                   f"pool2d {mode} {tuple(X.shape)} k={k} stride={stride} padding={padding} {layout}", seed)


# --------------------------------------------------------------------------------- common rules

def test_outputs_stay_on_the_input_device_and_dtype():
    meta = dict(device="meta", dtype=torch.float32)
    outputs = [conv2d(torch.empty(2, 3, 7, 6, **meta), torch.empty(4, 3, 3, 3, **meta), torch.empty(4, **meta), 2, 1),
               pool2d(torch.empty(2, 3, 7, 6, **meta), 3, 2, 1), pool2d(torch.empty(2, 3, 7, 6, **meta), 2, mode="avg")]
    for out in outputs:
        assert out.device.type == "meta" and out.dtype == torch.float32, f"result is {out.dtype} on {out.device}"
    assert tuple(outputs[0].shape) == (2, 4, 4, 3) and tuple(outputs[1].shape) == (2, 3, 4, 3)


def test_inputs_are_not_mutated():
    g = gen(3)
    inputs = {"X": tensor((2, 3, 6, 5), torch.float64, g), "K": tensor((2, 3, 3, 3), torch.float64, g),
              "b": tensor((2,), torch.float64, g)}
    before = {n: (t.clone(), t._version) for n, t in inputs.items()}
    leaves = {n: t.requires_grad_() for n, t in inputs.items()}
    (conv2d(leaves["X"], leaves["K"], leaves["b"], 2, 1).sum() + pool2d(leaves["X"], 2, 1, 1).sum()
     + pool2d(leaves["X"], 3, mode="avg").sum()).backward()
    for name, (value, version) in before.items():
        assert inputs[name]._version == version, f"{name} was written into"
        assert_close(inputs[name].detach(), value, Tolerance(0.0, 0.0), f"{name} after the calls")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.backends.cudnn.allow_tf32 = False
    g = gen(4)
    X, K, b = tensor((2, 3, 9, 8), torch.float32, g), tensor((4, 3, 3, 2), torch.float32, g), tensor((4,), torch.float32, g)
    cases = {"conv2d": lambda t: conv2d(t(X), t(K), t(b), 2, 1), "max": lambda t: pool2d(t(X), 3, 2, 1),
             "avg": lambda t: pool2d(t(X), 2, mode="avg")}
    for name, call in cases.items():
        Y = call(lambda t: t.cuda())
        assert Y.device.type == "cuda", f"{name} returned a tensor on {Y.device}"
        assert_close(Y.cpu(), call(lambda t: t), tolerance(torch.float32, scale=18), f"{name} on CUDA vs CPU")
