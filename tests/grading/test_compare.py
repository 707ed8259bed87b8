"""Golden messages of ``autograder/grading/compare.py``: the exact paragraph a student reads for
each kind of mismatch. A change to any of these sentences is a change to the course's feedback and
must show up here (and in a reviewer's diff) rather than pass unnoticed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from autograder.course.registry import Tolerance
from autograder.grading import compare

F64 = torch.float64
TIGHT = Tolerance(rtol=1e-7, atol=1e-7)
DTYPE_HINT = ("create new tensors with the input's dtype and device (e.g. torch.zeros(shape, dtype=X.dtype, "
              "device=X.device), or torch.zeros_like / new_zeros), and do not convert the input")
DEVICE_HINT = ("do not create tensors on the default device: pass device=X.device (or use torch.zeros_like, "
               "X.new_zeros) and never call .cpu() or .numpy() on the way")
GRADIENT_HINT = ("build the output from {} with differentiable torch operations only: no .detach(), .item(), "
                 ".numpy(), .data or torch.tensor(...) of intermediate results on the way")


def t(*values, dtype=F64):
    return torch.tensor(values, dtype=dtype)


def call(grads=None, grad_error=""):
    """What ``expect_gradient`` reads of a worker call: the gradients and why they are missing."""
    return SimpleNamespace(grads=grads or {}, grad_error=grad_error)


GOLDEN = {
    "one element off, with the test's hint": (
        lambda: compare.expect_close(t(1., 2, 3, 4), t(1., 2, 3.5, 4), quantity="output", tol=TIGHT,
                                     hint="sum over the last axis"),
        "output: 1 / 4 elements differ; greatest absolute difference 0.5 at index (2,), greatest relative "
        "difference 0.143 (allowed atol=1e-07, rtol=1e-07). Hint: sum over the last axis"),
    "an index in two dimensions": (
        lambda: compare.expect_close(torch.tensor([[0., 0, 0], [0, 0, 2]], dtype=F64),
                                     torch.tensor([[0., 0, 0], [0, 0, 1]], dtype=F64), quantity="Y", tol=TIGHT),
        "Y: 1 / 6 elements differ; greatest absolute difference 1 at index (1, 2), greatest relative "
        "difference 1 (allowed atol=1e-07, rtol=1e-07)."),
    "an exact zero expected": (
        lambda: compare.expect_close(t(0.5, 1.), t(0., 1.), quantity="Y", tol=TIGHT),
        "Y: 1 / 2 elements differ; greatest absolute difference 0.5 at index (0,), greatest relative "
        "difference inf (allowed atol=1e-07, rtol=1e-07)."),
    "nan and infinity": (
        lambda: compare.expect_close(t(float("nan"), float("inf"), 3.), t(1., 2, 3), quantity="loss", tol=TIGHT),
        "loss: 2 / 3 elements differ (1 is nan and 1 is infinite where a finite value was expected); greatest "
        "absolute difference inf at index (1,), greatest relative difference inf (allowed atol=1e-07, rtol=1e-07)."),
    "a 0-d tensor": (
        lambda: compare.expect_close(torch.tensor(2., dtype=F64), torch.tensor(1., dtype=F64), quantity="norm",
                                     tol=TIGHT),
        "norm: the value differs; greatest absolute difference 1, greatest relative difference 1 "
        "(allowed atol=1e-07, rtol=1e-07)."),
    "the shape": (
        lambda: compare.expect_close(torch.zeros(2, 3, dtype=F64), torch.zeros(3, 2, dtype=F64), quantity="Y",
                                     hint="check the output size"),
        "Y: shape (2, 3), expected (3, 2). Hint: check the output size"),
    "a missing dimension": (
        lambda: compare.expect_close(torch.zeros(4, dtype=F64), torch.zeros(4, 1, dtype=F64), quantity="Y"),
        "Y: shape (4,), expected (4, 1)."),
    "the dtype": (
        lambda: compare.expect_close(torch.zeros(2), torch.zeros(2, dtype=F64), quantity="Y"),
        f"Y: dtype float32, expected float64 (the input's dtype). Hint: {DTYPE_HINT}"),
    "the device": (
        lambda: compare.expect_close(torch.zeros(2, dtype=F64, device="meta"), torch.zeros(2, dtype=F64),
                                     quantity="Y"),
        f"Y: on device meta, expected cpu (the input's device). Hint: {DEVICE_HINT}"),
    "nothing returned": (
        lambda: compare.expect_close(None, torch.zeros(2), quantity="Y"),
        "Y: expected a torch.Tensor, got None (is a `return` statement missing?)."),
    "a list": (
        lambda: compare.expect_close([1, 2], torch.zeros(2), quantity="Y"),
        "Y: expected a torch.Tensor, got a list of 2 items."),
    "a known mistake, in the values": (
        lambda: compare.expect_close(t(2., 1), t(1., 2), quantity="Y", tol=TIGHT, hint="not shown",
                                     mistakes={"the kernel flipped, i.e. a convolution": t(2., 1)}),
        "Y: 2 / 2 elements differ; greatest absolute difference 1 at index (0,), greatest relative difference 1 "
        "(allowed atol=1e-07, rtol=1e-07). Your result matches the kernel flipped, i.e. a convolution."),
    "a known mistake, in the shape": (
        lambda: compare.expect_close(torch.zeros(3, dtype=F64), torch.zeros(2, dtype=F64), quantity="loss",
                                     hint="not shown",
                                     mistakes={"a mean instead of one loss per example": torch.zeros(3, dtype=F64)}),
        "loss: shape (3,), expected (2,). Your result matches a mean instead of one loss per example."),
    "bit for bit": (
        lambda: compare.expect_equal(t(1., 2, 3), t(1., 2, 3 + 1e-12), quantity="X after the call",
                                     hint="do not modify X"),
        "X after the call: 1 / 3 elements differ; greatest absolute difference 1e-12 at index (2,), greatest "
        "relative difference 3.33e-13 (must be exactly equal). Hint: do not modify X"),
    "bit for bit, integers": (
        lambda: compare.expect_equal(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]), quantity="actions"),
        "actions: 1 / 3 elements differ (must be exactly equal)."),
    "a number wanted, a tensor given": (
        lambda: compare.expect_scalar_close(torch.zeros(3, dtype=F64), 1.0, quantity="total norm"),
        "total norm: a tensor of shape (3,); expected a Python float or a 0-d tensor. Hint: return a single "
        "number, e.g. with .item() or by not keeping a dimension"),
    "a number wanted, a tensor without values": (
        lambda: compare.expect_scalar_close(torch.empty((), device="meta"), 1.0, quantity="returned value"),
        "returned value: a tensor without values (on the meta device); expected a number."),
    "a number off": (
        lambda: compare.expect_scalar_close(1.5, 1.0, quantity="total norm", tol=TIGHT),
        "total norm: the value differs; greatest absolute difference 0.5, greatest relative difference 0.5 "
        "(allowed atol=1e-07, rtol=1e-07)."),
    "a number wanted, a string given": (
        lambda: compare.expect_scalar_close("1.0", 1.0, quantity="total norm"),
        "total norm: expected a number (a Python float or a 0-d tensor), got a str."),
    "no gradient could be taken": (
        lambda: compare.expect_gradient(call(grad_error="element 0 of tensors does not require grad"), "X",
                                        torch.zeros(2, dtype=F64)),
        "gradient of X: could not be computed: element 0 of tensors does not require grad. "
        f"Hint: {GRADIENT_HINT.format('X')}"),
    "no gradient flows back": (
        lambda: compare.expect_gradient(call(), "W_q", torch.zeros(2, dtype=F64), case=" (causal mask)"),
        "gradient of W_q (causal mask): no gradient flows back to W_q (the output does not depend on W_q "
        f"through autograd). Hint: {GRADIENT_HINT.format('W_q')}"),
    "a gradient off": (
        lambda: compare.expect_gradient(call(grads={"X": t(1., 1)}), "X", t(1., 3), tol=TIGHT),
        "gradient of X: 1 / 2 elements differ; greatest absolute difference 2 at index (1,), greatest relative "
        "difference 0.667 (allowed atol=1e-07, rtol=1e-07)."),
    "a plain expectation": (
        lambda: compare.expect(False, "the mask is not resampled between calls!", hint="draw a new mask"),
        "the mask is not resampled between calls! Hint: draw a new mask"),
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_message(case):
    check, message = GOLDEN[case]
    with pytest.raises(compare.GradingFailure) as failure:
        check()
    assert str(failure.value) == message


@pytest.mark.parametrize("check", [
    lambda: compare.expect_close(t(1., 2), t(1., 2 + 1e-9), quantity="Y", tol=TIGHT),
    lambda: compare.expect_equal(t(float("nan"), 1.), t(float("nan"), 1.), quantity="Y"),
    lambda: compare.expect_scalar_close(torch.tensor(1.0, dtype=F64), 1.0, quantity="Y"),
    lambda: compare.expect_gradient(call(grads={"X": t(1., 3)}), "X", t(1., 3)),
    lambda: compare.expect_close(torch.zeros(2, device="meta"), torch.zeros(2, device="meta"), quantity="Y"),
    lambda: compare.expect_scalar_close(torch.empty((), device="meta"), 1.0, quantity="Y", on_meta=True),
    lambda: compare.expect_close(t(1., 2, dtype=torch.float16), t(1., 2), quantity="Y", strict_dtype=False,
                                 exercise="corr2d"),
    lambda: compare.expect_close(t(1., 2, dtype=torch.bfloat16), t(1., 2), quantity="Y", strict_dtype=False),
], ids=["within tolerance", "nan equals nan when untouched", "0-d tensor for a number", "gradient", "meta",
        "a number on meta, where the call ran", "half precision, another test's dtype", "bfloat16, no exercise"])
def test_what_passes_says_nothing(check):
    check()

