"""Hidden tests of ``pool2d(X, kernel_size, stride=None, padding=0, mode="max")`` (docs/exercises.md §10):
max or average pooling of ``X`` (n, c, h, w) over kernel_size x kernel_size windows taken every
``stride`` positions (default: kernel_size), padding -inf for max and counted zeros for avg,
output size as for conv2d. Differentiable with respect to X (ties are never drawn: inputs are
continuous, and padding is at most half the window, so every window holds an element of X)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, normal, reference_output, reference_vjp,
                                       shape_text, value_and_propagation_devices, vjp_on)
from reference import pool2d as reference_pool2d

EXERCISE = "pool2d"

#: Input shape of the value tests: h and w differ, neither divisible by 3.
SHAPE = (2, 3, 8, 10)
#: (kernel_size, stride, padding) of the value tests: windows side by side (default stride) and
#: overlapping windows.
VALUE_CASES = ((2, None, 0), (3, 2, 0), (3, 1, 0))
#: (kernel_size, stride) of the stride test, on SHAPE: overlapping windows, a stride larger than the
#: window, a stride smaller than the window by more than one, then the default stride (explicit strides
#: first, so that a stride ignored everywhere is named as such).
STRIDE_CASES = ((2, 1), (2, 3), (4, 2), (2, None), (3, None))
#: (kernel_size, stride, padding) of the padding test; torch allows padding up to half the window.
PADDING_CASES = ((2, 1, 1), (3, 2, 1), (4, 2, 2), (2, None, 1))
#: (kernel_size, stride, padding) of the gradient, device and no-mutation tests: overlapping windows,
#: an explicit stride and no padding, so that a slip in the stride default or the padding costs only
#: the tests about those.
PLAIN = (3, 1, 0)
#: (what, shape, kernel_size, stride, padding) of the edge-case test.
EDGE_CASES = (
    ("a 1x1 window", (2, 3, 4, 5), 1, None, 0),
    ("a 1x1 window with stride 2", (2, 3, 7, 6), 1, 2, 0),
    ("a batch of one", (1, 4, 6, 6), 3, 3, 1),
    ("h and w not divisible by the stride", (2, 3, 11, 9), 2, None, 0),
    ("a window as large as the input", (2, 3, 5, 5), 5, None, 0),
    ("one channel", (3, 1, 7, 7), 3, 2, 1),
)

HINT_VALUES = ("Y[m, c, i, j] = max (or mean) of X[m, c, i*stride : i*stride + k, j*stride : j*stride + k], each channel "
               "on its own; stride defaults to kernel_size")
HINT_STRIDE = ("the windows start every `stride` positions (stride=None means stride=kernel_size: windows side by "
               "side): h_out = (h + 2 padding - k) // stride + 1")
HINT_PADDING = ("pad all four sides with `padding` values: -inf for max (padding never wins), zeros for avg, and "
                "always divide by kernel_size**2 (the padded zeros count)")
HINT_GRADIENT = ("build Y with differentiable torch operations (slicing, F.pad, unfold, amax/max, mean, torch.stack); "
                 "no .item(), .detach() or torch.tensor(...) on the way")
HINT_NO_MUTATION = "pad into a new tensor (F.pad, torch.cat); never write into X"


def _args(X, k, stride, padding, mode) -> dict:
    return {"X": X, "kernel_size": k, "stride": stride, "padding": padding, "mode": mode}


def _out_shape(args) -> tuple[int, ...]:
    n, c, h, w = args["X"].shape
    k, p = args["kernel_size"], args["padding"]
    s = k if args["stride"] is None else args["stride"]
    return (n, c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)


def _mistakes(args) -> dict[str, object]:
    """Typical mistakes -> what they produce (float64, CPU; computed only when needed)."""
    X = args["X"].detach().cpu().to(FLOAT64)
    k, s, p, mode = args["kernel_size"], args["stride"], args["padding"], args["mode"]
    stride = k if s is None else s

    def pool(X=X, k=k, s=s, p=p, mode=mode):
        return lambda: reference_pool2d(X, k, s, p, mode)

    other = "avg" if mode == "max" else "max"
    mistakes = {
        f"{other} pooling where mode={mode!r} asks for {mode}": pool(mode=other),
        "the default stride taken as 1: stride=None means stride=kernel_size (windows side by side)":
            pool(s=1 if s is None else s),
        "windows moved by 1 whatever the stride (overlapping wrongly): " + HINT_STRIDE: pool(s=1),
        "windows moved by kernel_size whatever the stride: " + HINT_STRIDE: pool(s=k),
        "the padding on one side only (top and left): pad all four sides":
            lambda: reference_pool2d(F.pad(X, (p, 0, p, 0), value=-torch.inf if mode == "max" else 0.0), k, stride, 0, mode),
        "the padding on one side only (bottom and right): pad all four sides":
            lambda: reference_pool2d(F.pad(X, (0, p, 0, p), value=-torch.inf if mode == "max" else 0.0), k, stride, 0, mode),
        "the padding ignored: " + HINT_PADDING: pool(p=0),
    }
    if mode == "max":
        mistakes["zero padding in max pooling: pad with -inf so that the padding never wins"] = (
            lambda: F.pad(X, (p, p, p, p)).unfold(2, k, stride).unfold(3, k, stride).amax(dim=(-2, -1)))
    else:
        mistakes["the sum of each window instead of its mean: divide by kernel_size**2"] = (
            lambda: reference_pool2d(X, k, s, p, "avg") * k * k)
        mistakes["the padded zeros not counted in the average: avg pooling here divides by kernel_size**2 "
                 "(count_include_pad=True)"] = lambda: (reference_pool2d(X, k, s, p, "avg") / reference_pool2d(
                     torch.ones_like(X[:1, :1]), k, s, p, "avg"))
    return mistakes


def _describe(args) -> str:
    return (f"mode={args['mode']!r}, X of shape {shape_text(args['X'].shape)}, kernel_size={args['kernel_size']}, "
            f"stride={args['stride']}, padding={args['padding']}")


def _expect_output(result, args, where, dtype, exercise, quantity, hint=HINT_VALUES):
    expected = reference_output(reference_pool2d, args).to(where, dtype)
    expect_close(result.output, expected, quantity=quantity, exercise=exercise, hint=hint, mistakes=_mistakes(args))


def _check_values(student, args, device, exercise, hint=HINT_VALUES, layouts=None, case=""):
    result = student.vjp(EXERCISE, args, device=device, layouts=layouts)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for {_describe(args)}{case}", hint)
    return result


def _negative(rng, *shape):
    """Entries below -1: a zero padding would win every window it reaches."""
    return -normal(rng, *shape).abs() - 1.0


def test_max_values(student, rng, device, exercise):
    for k, stride, padding in VALUE_CASES:
        _check_values(student, _args(normal(rng, *SHAPE), k, stride, padding, "max"), device, exercise)


def test_avg_values(student, rng, device, exercise):
    for k, stride, padding in VALUE_CASES:
        _check_values(student, _args(normal(rng, *SHAPE), k, stride, padding, "avg"), device, exercise)


def test_gradients(student, rng, device, exercise):
    for mode in ("max", "avg"):
        args = _args(normal(rng, *SHAPE), *PLAIN, mode)
        upstream = normal(rng, *_out_shape(args))
        result = student.vjp(EXERCISE, args, grad_wrt=["X"], upstream=upstream, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for {_describe(args)}")
        _, grads = reference_vjp(reference_pool2d, args, ["X"], upstream)
        hint = HINT_GRADIENT + (": for max, the gradient of each window goes to its maximum" if mode == "max" else "")
        expect_gradient(result.calls[0], "X", grads["X"].to(device), exercise=exercise, hint=hint, case=f" (mode={mode!r})")


def test_stride(student, rng, device, exercise):
    for k, stride in STRIDE_CASES:
        for mode in ("max", "avg"):
            _check_values(student, _args(normal(rng, *SHAPE), k, stride, 0, mode), device, exercise, HINT_STRIDE)


def test_padding(student, rng, device, exercise):
    for k, stride, padding in PADDING_CASES:
        for mode in ("max", "avg"):
            _check_values(student, _args(_negative(rng, *SHAPE), k, stride, padding, mode), device, exercise,
                          HINT_PADDING)


def test_edge_cases(student, rng, device, exercise):
    for what, shape, k, stride, padding in EDGE_CASES:
        for mode in ("max", "avg"):
            _check_values(student, _args(normal(rng, *shape), k, stride, padding, mode), device, exercise,
                          HINT_STRIDE, case=f" ({what})")
    for layout in ("transposed", "strided"):  # views with other strides: same values
        for mode in ("max", "avg"):
            _check_values(student, _args(normal(rng, *SHAPE), 3, 2, 1, mode), device, exercise,
                          "inputs may be views with unusual strides: use .reshape rather than .view",
                          layouts={"X": layout}, case=f" (non-contiguous X, {layout})")


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            for mode in ("max", "avg"):
                args = _args(normal(rng, *SHAPE).to(dtype), *PLAIN, mode)
                result = vjp_on(student, EXERCISE, args, where)
                if result is None:
                    continue
                quantity = f"output for {dtype_text(dtype)} X on {where}, mode={mode!r}"
                if where == "meta":
                    expect_like(result.output, shape=_out_shape(args), dtype=dtype, device="meta", quantity=quantity,
                                hint=HINT_STRIDE)
                else:
                    _expect_output(result, args, where, dtype, exercise, quantity)


def test_no_mutation(student, rng, device, exercise):
    for mode in ("max", "avg"):
        args = _args(normal(rng, *SHAPE), *PLAIN, mode)
        upstream = normal(rng, *_out_shape(args))
        result = student.vjp(EXERCISE, args, grad_wrt=["X"], upstream=upstream, device=device)
        _expect_output(result, args, device, FLOAT64, exercise, f"output for {_describe(args)}")
        expect_equal(result.inputs_after.get("X"), args["X"].to(device), quantity=f"X after the call (mode={mode!r})",
                     hint=HINT_NO_MUTATION)
