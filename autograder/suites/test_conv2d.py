"""Hidden tests of ``conv2d(X, K, b=None, stride=1, padding=0)`` (docs/exercises.md §9): the
multi-channel cross-correlation of ``X`` (n, c_in, h, w) with ``K`` (c_out, c_in, kh, kw), summed
over input channels, plus ``b[o]``, with zero padding and a stride; output (n, c_out, h_out, w_out)
with h_out = (h + 2 padding - kh) // stride + 1. Differentiable with respect to X, K and b."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from autograder.errors import OutcomeKind
from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like, fail
from autograder.sandbox.session import StudentError
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, normal, reference_output, reference_vjp,
                                       shape_text, value_and_propagation_devices, vjp_on)
from reference import conv2d as reference_conv2d

EXERCISE = "conv2d"

#: (n, c_in, c_out, h, w, kh, kw) of the value and gradient tests: nothing square, nothing equal.
SHAPE = (2, 3, 4, 7, 8, 3, 2)
#: Many input channels and few output channels: a missed channel sum changes everything.
CHANNELS_SHAPE = (2, 5, 2, 6, 7, 3, 3)
#: (stride, padding) pairs of the stride/padding test, on a (2, 2, 9, 10) input and a 3x3 kernel.
STRIDE_PADDING = ((2, 0), (1, 1), (2, 1), (3, 2), (2, 3))
STRIDE_PADDING_SHAPE = (2, 2, 3, 9, 10, 3, 3)
#: The gradient, device and no-mutation tests use stride 1 and no padding, so that a slip in the
#: stride or the padding costs only the tests about those (stride/padding and edge cases).
PLAIN_STRIDE, PLAIN_PADDING = 1, 0
#: (what, (n, c_in, c_out, h, w, kh, kw), stride, padding, bias) of the edge-case test.
EDGE_CASES = (
    ("a stride larger than the kernel", (2, 2, 3, 9, 10, 2, 2), 3, 0, True),
    ("padding larger than half the kernel", (1, 2, 3, 5, 6, 3, 2), 1, 2, True),
    ("a 1x1 kernel", (3, 4, 2, 5, 6, 1, 1), 1, 0, True),
    ("a 1x1 kernel with stride 2 and padding 1", (2, 3, 2, 5, 6, 1, 1), 2, 1, True),
    ("a batch of one", (1, 3, 4, 6, 6, 3, 3), 1, 1, True),
    ("h and w not divisible by the stride", (2, 3, 2, 11, 9, 3, 3), 2, 1, True),
    ("a kernel as large as the padded input", (2, 2, 3, 4, 5, 6, 7), 1, 1, True),
    ("b=None (no bias)", (2, 3, 4, 7, 8, 3, 2), 1, 1, False),
)

HINT_VALUES = ("Y[m, o, i, j] = b[o] + sum over c, a, b' of X_pad[m, c, i * stride + a, j * stride + b'] * K[o, c, a, b']: "
               "cross-correlation (no flip), summed over the input channels c")
HINT_CHANNELS = ("each output channel o sums the cross-correlations of every input channel c with its own kernel "
                 "K[o, c]: Y[:, o] = b[o] + sum_c corr(X[:, c], K[o, c])")
HINT_STRIDE_PADDING = ("pad X with `padding` zeros on all four sides (top, bottom, left and right), then take the windows "
                       "every `stride` positions: h_out = (h + 2 padding - kh) // stride + 1")
HINT_GRADIENT = ("build Y from X, K and b with differentiable torch operations (slicing, F.pad, unfold, *, sum, "
                 "einsum, torch.stack); no .item(), .detach(), .numpy() or torch.tensor(...) on the way")
HINT_NO_BIAS = "b=None means no bias: add b only when it is given (if b is not None: ...)"
HINT_NO_MUTATION = "pad and reshape into new tensors (F.pad, torch.cat, reshape); never write into X, K or b"


def _inputs(rng, shape, stride, padding, bias=True) -> dict:
    n, c_in, c_out, h, w, kh, kw = shape
    return {"X": normal(rng, n, c_in, h, w), "K": normal(rng, c_out, c_in, kh, kw),
            "b": normal(rng, c_out) if bias else None, "stride": stride, "padding": padding}


def _out_shape(args) -> tuple[int, ...]:
    n, _, h, w = args["X"].shape
    c_out, _, kh, kw = args["K"].shape
    s, p = args["stride"], args["padding"]
    return (n, c_out, (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1)


def _mistakes(args) -> dict[str, object]:
    """Typical mistakes -> what they produce (float64, CPU; computed only when needed)."""
    X, K = args["X"].detach().cpu().to(FLOAT64), args["K"].detach().cpu().to(FLOAT64)
    b = None if args["b"] is None else args["b"].detach().cpu().to(FLOAT64)
    s, p = args["stride"], args["padding"]
    c_in = X.shape[1]

    def conv(X=X, K=K, b=b, s=s, p=p):
        return lambda: reference_conv2d(X, K, b, s, p)

    def bias(Y):
        return Y if b is None else Y + b.reshape(1, -1, 1, 1)

    mistakes = {
        "the kernel flipped, i.e. a convolution: cross-correlation uses K as it is": conv(K=K.flip(-2, -1)),
        "only the first input channel: " + HINT_CHANNELS: conv(X=X[:, :1], K=K[:, :1]),
        "the mean over input channels instead of their sum: " + HINT_CHANNELS:
            lambda: bias(reference_conv2d(X, K, None, s, p) / c_in),
        "the input channels not summed but paired with the output channels (X[:, o] with K[o, o]): " + HINT_CHANNELS:
            lambda: bias(torch.stack([reference_conv2d(X[:, o % c_in:o % c_in + 1], K[o:o + 1, o % c_in:o % c_in + 1],
                                                       None, s, p)[:, 0] for o in range(K.shape[0])], dim=1)),
        "the padding on one side only (top and left): pad `padding` zeros on all four sides":
            lambda: reference_conv2d(F.pad(X, (p, 0, p, 0)), K, b, s, 0),
        "the padding on one side only (bottom and right): pad `padding` zeros on all four sides":
            lambda: reference_conv2d(F.pad(X, (0, p, 0, p)), K, b, s, 0),
        "the stride ignored (windows moved by 1): take the windows every `stride` positions": conv(s=1),
        "the padding ignored: " + HINT_STRIDE_PADDING: conv(p=0),
    }
    if b is not None:
        mistakes["the bias left out: add b[o] to every position of output channel o"] = conv(b=None)
        mistakes["the bias added once per input channel: add b[o] once"] = (
            lambda: reference_conv2d(X, K, b, s, p) + (c_in - 1) * b.reshape(1, -1, 1, 1))
    return mistakes


def _describe(args) -> str:
    return (f"X of shape {shape_text(args['X'].shape)}, K of shape {shape_text(args['K'].shape)}, "
            f"{'no bias' if args['b'] is None else 'a bias'}, stride={args['stride']}, padding={args['padding']}")


def _expect_output(result, args, where, dtype, exercise, quantity, hint=HINT_VALUES):
    expected = reference_output(reference_conv2d, args).to(where, dtype)
    expect_close(result.output, expected, quantity=quantity, exercise=exercise, hint=hint, mistakes=_mistakes(args))


def _check_values(student, args, device, exercise, hint=HINT_VALUES, layouts=None, case=""):
    result = student.vjp(EXERCISE, args, device=device, layouts=layouts)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for {_describe(args)}{case}", hint)
    return result


def test_values(student, rng, device, exercise):
    _check_values(student, _inputs(rng, SHAPE, 1, 0), device, exercise)


def test_channels(student, rng, device, exercise):
    _check_values(student, _inputs(rng, CHANNELS_SHAPE, 1, 0), device, exercise, HINT_CHANNELS)


def _gradient_test(student, rng, device, exercise, name):
    args = _inputs(rng, SHAPE, PLAIN_STRIDE, PLAIN_PADDING)
    upstream = normal(rng, *_out_shape(args))
    result = student.vjp(EXERCISE, args, grad_wrt=["X", "K", "b"], upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for {_describe(args)}")
    _, grads = reference_vjp(reference_conv2d, args, ["X", "K", "b"], upstream)
    expect_gradient(result.calls[0], name, grads[name].to(device), exercise=exercise, hint=HINT_GRADIENT)


def test_gradient_X(student, rng, device, exercise):
    _gradient_test(student, rng, device, exercise, "X")


def test_gradient_K(student, rng, device, exercise):
    _gradient_test(student, rng, device, exercise, "K")


def test_gradient_b(student, rng, device, exercise):
    _gradient_test(student, rng, device, exercise, "b")


def test_stride_padding(student, rng, device, exercise):
    for stride, padding in STRIDE_PADDING:
        _check_values(student, _inputs(rng, STRIDE_PADDING_SHAPE, stride, padding), device, exercise,
                      HINT_STRIDE_PADDING)


def test_edge_cases(student, rng, device, exercise):
    for what, shape, stride, padding, bias in EDGE_CASES:
        hint = HINT_STRIDE_PADDING if bias else HINT_NO_BIAS
        try:
            _check_values(student, _inputs(rng, shape, stride, padding, bias), device, exercise, hint,
                          case=f" ({what})")
        except StudentError as error:
            if bias or error.kind != OutcomeKind.EXCEPTION:
                raise
            fail(f"with b=None, `{EXERCISE}` {error.message}", hint=HINT_NO_BIAS)
    for layout in ("transposed", "strided"):  # views with other strides: same values
        args = _inputs(rng, SHAPE, 2, 1)
        _check_values(student, args, device, exercise, "inputs may be views with unusual strides: use .reshape "
                      "rather than .view", layouts={"X": layout, "K": layout, "b": "strided"},
                      case=f" (non-contiguous, {layout})")


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            args = _inputs(rng, SHAPE, PLAIN_STRIDE, PLAIN_PADDING)
            args = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
            result = vjp_on(student, EXERCISE, args, where)
            if result is None:
                continue
            quantity = f"output for {dtype_text(dtype)} X, K and b on {where}"
            if where == "meta":
                expect_like(result.output, shape=_out_shape(args), dtype=dtype, device="meta", quantity=quantity,
                            hint=HINT_STRIDE_PADDING)
            else:
                _expect_output(result, args, where, dtype, exercise, quantity)


def test_no_mutation(student, rng, device, exercise):
    args = _inputs(rng, SHAPE, PLAIN_STRIDE, PLAIN_PADDING)
    upstream = normal(rng, *_out_shape(args))
    result = student.vjp(EXERCISE, args, grad_wrt=["X", "K", "b"], upstream=upstream, device=device)
    _expect_output(result, args, device, FLOAT64, exercise, f"output for {_describe(args)}")
    for name in ("X", "K", "b"):
        expect_equal(result.inputs_after.get(name), args[name].to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
