"""Comparisons that explain themselves: the hidden suites' verdicts, worded for the student.

Every check follows ``torch.testing.assert_close``: first the type (a plain ``torch.Tensor``; a
value the worker could not send arrives as ``protocol.Bad``), then shape, dtype and device, then
the values within a per-dtype tolerance from the registry, ``nan`` never equal. A failed check
raises :class:`GradingFailure`, whose message is the one paragraph of feedback the student reads:

    gradient of X: 12 / 60 elements differ; greatest absolute difference 0.31 at index (2, 4),
    greatest relative difference 0.052 (allowed atol=1e-07, rtol=1e-07). Hint: ...

Messages name the quantity, where it is off and by how much, and what was allowed. They never
contain the hidden inputs, the expected tensor or test source: one index and the size of the
difference there, plus the greatest relative difference (without its index, so that the two
together never give away an expected value), are all that is revealed.

*Known mistakes*: a check may be given the results that typical wrong implementations would
produce (``{"the kernel flipped, i.e. a convolution": Y_flipped}``). When the student's value fails
and matches one of them, the message names that mistake instead of the generic hint.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NoReturn

import torch

from autograder.course import registry
from autograder.worker.protocol import Bad

__all__ = [
    "GradingFailure",
    "EXACT",
    "expect",
    "fail",
    "tolerance_for",
    "expect_tensor",
    "expect_like",
    "expect_close",
    "expect_equal",
    "expect_scalar_close",
    "expect_gradient",
    "matches",
    "has_nonfinite",
]

#: Tolerance of checks that must hold bit for bit (untouched inputs, gradients left alone).
EXACT = registry.Tolerance(rtol=0.0, atol=0.0)

#: A known mistake's description -> what that mistake produces (a tensor or number, or a
#: zero-argument callable computing it only when needed).
KnownMistakes = Mapping[str, Any]

_DTYPE_HINT = ("create new tensors with the input's dtype and device (e.g. torch.zeros(shape, dtype=X.dtype, "
               "device=X.device), or torch.zeros_like / new_zeros), and do not convert the input")
_DEVICE_HINT = ("do not create tensors on the default device: pass device=X.device (or use torch.zeros_like, "
                "X.new_zeros) and never call .cpu() or .numpy() on the way")


class GradingFailure(AssertionError):
    """A hidden check failed; ``str(failure)`` is the feedback for the student (one paragraph)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ------------------------------------------------------------------------------------ basics

def fail(message: str, *, hint: str | None = None) -> NoReturn:
    """Raise :class:`GradingFailure` with ``message`` (and ``hint``, if any)."""
    raise GradingFailure(_with_hint(message, hint))


def expect(condition: bool, message: str, *, hint: str | None = None) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        fail(message, hint=hint)


def tolerance_for(dtype: Any, exercise: registry.Exercise | str | None = None) -> registry.Tolerance:
    """The registry's tolerance of ``exercise`` (or the defaults) for a floating ``dtype``."""
    if exercise is None:
        return registry.default_tolerance(dtype)
    if isinstance(exercise, str):
        exercise = registry.BY_NAME[exercise]
    return exercise.tolerance(dtype)


def _with_hint(message: str, hint: str | None) -> str:
    message = message.rstrip()
    if not message.endswith((".", "?", "!")):
        message += "."
    return f"{message} Hint: {hint.rstrip()}" if hint else message


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def _fmt_index(index: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(i) for i in index) + ("," if len(index) == 1 else "") + ")"


def _fmt_shape(shape: Any) -> str:
    return _fmt_index(tuple(int(s) for s in shape))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _describe(value: Any) -> str:
    """What a non-tensor value is, without showing it."""
    if isinstance(value, Bad):
        return value.what
    if value is None:
        return "None (is a `return` statement missing?)"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return "a dict"
    return f"a {type(value).__name__}"


def _same_device(actual: torch.device, expected: torch.device) -> bool:
    if actual.type != expected.type:
        return False
    return actual.index is None or expected.index is None or actual.index == expected.index


# ------------------------------------------------------------------------------- attributes

def expect_tensor(actual: Any, *, quantity: str, hint: str | None = None) -> torch.Tensor:
    """``actual`` must be a plain ``torch.Tensor`` (the wire turns subclasses into ``Bad``)."""
    if type(actual) is torch.Tensor:
        return actual
    fail(f"{quantity}: expected a torch.Tensor, got {_describe(actual)}", hint=hint)


def expect_like(actual: Any, *, shape: Any, dtype: torch.dtype, device: Any, quantity: str,
                hint: str | None = None, mistakes: KnownMistakes | None = None) -> torch.Tensor:
    """Type, shape, dtype and device of ``actual`` (no values: works for ``meta`` tensors too)."""
    tensor = expect_tensor(actual, quantity=quantity, hint=hint)
    if tuple(tensor.shape) != tuple(shape):
        diagnosis = _diagnose(tensor, mistakes, None)
        message = f"{quantity}: shape {_fmt_shape(tensor.shape)}, expected {_fmt_shape(shape)}"
        if diagnosis:
            fail(f"{message}. Your result matches {diagnosis}")
        fail(message, hint=hint)
    if tensor.dtype != dtype:
        fail(f"{quantity}: dtype {_dtype_name(tensor.dtype)}, expected {_dtype_name(dtype)} (the input's dtype)",
             hint=_DTYPE_HINT)
    device = torch.device(device)
    if not _same_device(tensor.device, device):
        fail(f"{quantity}: on device {tensor.device}, expected {device} (the input's device)", hint=_DEVICE_HINT)
    return tensor


# ------------------------------------------------------------------------------------ values

def _value_mismatch(actual: torch.Tensor, expected: torch.Tensor, tol: registry.Tolerance,
                    allowed: str | None = None) -> str | None:
    """None when every element is close, else the assert_close-style sentence (without quantity)."""
    a = actual.detach().to(device="cpu", dtype=torch.float64)
    e = expected.detach().to(device="cpu", dtype=torch.float64)
    diff = (a - e).abs()
    close = (a == e) | (diff <= tol.atol + tol.rtol * e.abs())  # nan compares unequal to everything
    bad = ~close
    n_bad = int(bad.sum())
    if n_bad == 0:
        return None
    total = a.numel()
    parts = [f"{n_bad} / {total} elements differ" if total > 1 else "the value differs"]
    nan = int((a.isnan() & bad).sum())
    inf = int((a.isinf() & bad).sum())
    if nan or inf:
        what = [f"{nan} {'is' if nan == 1 else 'are'} nan"] if nan else []
        what += [f"{inf} {'is' if inf == 1 else 'are'} infinite"] if inf else []
        parts[0] += f" ({' and '.join(what)} where a finite value was expected)"
    finite_bad = bad & ~diff.isnan()
    if bool(finite_bad.any()):
        abs_diff = torch.where(finite_bad, diff, -1.0)
        worst = int(abs_diff.argmax())
        rel = torch.where(finite_bad, diff / e.abs(), -1.0)  # x / 0 = inf: an exact zero was expected
        rel = torch.where(rel.isnan(), math.inf, rel)
        worst_rel = int(rel.argmax())
        # one index only: the absolute and relative difference at the same place would reveal the expected value
        parts.append(f"greatest absolute difference {_fmt(float(abs_diff.flatten()[worst]))}"
                     f"{_where(worst, a.shape)}, greatest relative difference {_fmt(float(rel.flatten()[worst_rel]))}")
    return "; ".join(parts) + f" ({allowed or f'allowed atol={tol.atol:g}, rtol={tol.rtol:g}'})"


def _where(flat_index: int, shape: torch.Size) -> str:
    if len(shape) == 0:
        return ""
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), shape))
    return f" at index {_fmt_index(index)}"


def matches(actual: Any, candidate: Any, tol: registry.Tolerance) -> bool:
    """Whether ``actual`` equals ``candidate`` in shape and values within ``tol`` (dtype and device
    ignored). Numbers and 0-d tensors compare as numbers; ``nan`` entries of ``candidate`` are
    elements the mistake leaves undefined and are not compared. Never raises."""
    try:
        if callable(candidate):
            candidate = candidate()
        if isinstance(candidate, torch.Tensor) and candidate.device.type == "meta":
            return False
        a = _as_number_or_tensor(actual)
        c = _as_number_or_tensor(candidate)
        if a is None or c is None:
            return False
        if isinstance(a, float) or isinstance(c, float):
            a = torch.tensor(a, dtype=torch.float64) if isinstance(a, float) else a
            c = torch.tensor(c, dtype=torch.float64) if isinstance(c, float) else c
            if a.numel() != 1 or c.numel() != 1:
                return False
            a, c = a.reshape(()), c.reshape(())
        if a.device.type == "meta" or tuple(a.shape) != tuple(c.shape):
            return False
        a, c = a.detach().cpu(), c.detach().cpu()
        defined = ~c.isnan()  # nan in a candidate: that mistake leaves the element undefined
        if not bool(defined.any()):
            return False
        return _value_mismatch(a[defined], c[defined], tol) is None
    except Exception:  # noqa: BLE001 - a mistake that cannot be evaluated simply does not match
        return False


def _as_number_or_tensor(value: Any) -> float | torch.Tensor | None:
    if type(value) is torch.Tensor:
        return value if value.dtype.is_floating_point else value.to(torch.float64)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _diagnose(actual: Any, mistakes: KnownMistakes | None, tol: registry.Tolerance | None) -> str | None:
    if not mistakes:
        return None
    if tol is None:  # attributes already differ: compare values at the default tolerance of actual's dtype
        tol = registry.default_tolerance(getattr(actual, "dtype", "float64"))
    for description, candidate in mistakes.items():
        if matches(actual, candidate, tol):
            return description
    return None


def looser_tolerance(dtype: torch.dtype, other: torch.dtype, exercise: registry.Exercise | str | None = None
                     ) -> registry.Tolerance:
    """The looser of two floating dtypes' tolerances (values computed at the lower precision)."""
    a, b = tolerance_for(dtype, exercise), tolerance_for(other, exercise)
    return registry.Tolerance(rtol=max(a.rtol, b.rtol), atol=max(a.atol, b.atol))


def expect_close(actual: Any, expected: torch.Tensor, *, quantity: str, tol: registry.Tolerance | None = None,
                 exercise: registry.Exercise | str | None = None, hint: str | None = None,
                 mistakes: KnownMistakes | None = None, strict_dtype: bool = True) -> torch.Tensor:
    """``actual`` must match ``expected`` as ``torch.testing.assert_close`` would.

    ``expected`` carries the wanted shape, dtype and device (a reference computed in float64 on
    the CPU is converted by the caller). ``tol`` defaults to the registry tolerance of
    ``exercise`` (or the registry defaults) for ``expected``'s dtype. A meta ``expected`` checks
    attributes only. ``strict_dtype=False`` (a value test where another test owns the dtype):
    another floating dtype is not a failure here, and values are compared at the precision of the
    less precise of the two dtypes (one slip, one test).
    """
    if (not strict_dtype and type(actual) is torch.Tensor and actual.is_floating_point()
            and expected.is_floating_point() and actual.dtype != expected.dtype):
        tol = tol or looser_tolerance(actual.dtype, expected.dtype, exercise)
        expected = expected.to(actual.dtype) if torch.finfo(actual.dtype).bits < torch.finfo(expected.dtype).bits \
            else expected
        actual = actual.to(expected.dtype)
    tol = tol or tolerance_for(expected.dtype, exercise)
    tensor = expect_like(actual, shape=expected.shape, dtype=expected.dtype, device=expected.device,
                         quantity=quantity, hint=hint, mistakes=mistakes)
    if expected.device.type == "meta" or tensor.device.type == "meta":
        return tensor
    mismatch = _value_mismatch(tensor, expected, tol)
    if mismatch is None:
        return tensor
    diagnosis = _diagnose(tensor, mistakes, tol)
    if diagnosis:
        fail(f"{quantity}: {mismatch}. Your result matches {diagnosis}")
    fail(f"{quantity}: {mismatch}", hint=hint)


def expect_equal(actual: Any, expected: torch.Tensor, *, quantity: str, hint: str | None = None,
                 mistakes: KnownMistakes | None = None) -> torch.Tensor:
    """Bit-for-bit equality (``nan`` equal to ``nan`` here: an untouched ``nan`` is unchanged)."""
    tensor = expect_like(actual, shape=expected.shape, dtype=expected.dtype, device=expected.device,
                         quantity=quantity, hint=hint, mistakes=mistakes)
    a, e = tensor.detach().cpu(), expected.detach().cpu()
    same = a == e
    if a.is_floating_point():
        same |= a.isnan() & e.isnan()
    n_bad = int((~same).sum())
    if n_bad == 0:
        return tensor
    if a.is_floating_point():
        mismatch = _value_mismatch(torch.where(same, e, a), e, EXACT, allowed="must be exactly equal")
    else:
        mismatch = f"{n_bad} / {a.numel()} elements differ (must be exactly equal)"
    diagnosis = _diagnose(tensor, mistakes, None)  # a mistake matches within the dtype's default tolerance
    if diagnosis:
        fail(f"{quantity}: {mismatch}. Your result matches {diagnosis}")
    fail(f"{quantity}: {mismatch}", hint=hint)


def expect_scalar_close(actual: Any, expected: float, *, quantity: str, tol: registry.Tolerance | None = None,
                        exercise: registry.Exercise | str | None = None, dtype: torch.dtype = torch.float64,
                        hint: str | None = None, mistakes: KnownMistakes | None = None,
                        on_meta: bool = False) -> float:
    """A number returned as a Python float (or int) or a 0-d tensor must be close to ``expected``.

    ``tol`` defaults to the registry tolerance of ``exercise`` for ``dtype`` (the inputs' dtype).
    ``on_meta``: the call ran on the meta device (device propagation), where a 0-d meta tensor is
    the right kind of answer and has no value to compare (``nan`` is returned); anywhere else a
    tensor without values is not a number.
    """
    tol = tol or tolerance_for(dtype, exercise)
    if type(actual) is torch.Tensor:
        if actual.dim() != 0:
            fail(f"{quantity}: a tensor of shape {_fmt_shape(actual.shape)}; expected a Python float or a 0-d tensor",
                 hint="return a single number, e.g. with .item() or by not keeping a dimension")
        if actual.device.type == "meta":
            if on_meta:
                return math.nan
            fail(f"{quantity}: a tensor without values (on the meta device); expected a number", hint=hint)
        value = float(actual.detach().cpu().to(torch.float64))
    elif isinstance(actual, (int, float)) and not isinstance(actual, bool):
        value = float(actual)
    else:
        fail(f"{quantity}: expected a number (a Python float or a 0-d tensor), got {_describe(actual)}", hint=hint)
    mismatch = _value_mismatch(torch.tensor(value, dtype=torch.float64), torch.tensor(float(expected), dtype=torch.float64), tol)
    if mismatch is None:
        return value
    diagnosis = _diagnose(value, mistakes, tol)
    if diagnosis:
        fail(f"{quantity}: {mismatch}. Your result matches {diagnosis}")
    fail(f"{quantity}: {mismatch}", hint=hint)


def has_nonfinite(value: Any) -> bool:
    """Whether ``value`` is a tensor with data holding a nan or an infinity (False otherwise)."""
    return (type(value) is torch.Tensor and value.device.type != "meta" and value.is_floating_point()
            and not bool(torch.isfinite(value).all()))


# --------------------------------------------------------------------------------- gradients

_GRADIENT_HINT = ("build the output from {name} with differentiable torch operations only: no .detach(), .item(), "
                  ".numpy(), .data or torch.tensor(...) of intermediate results on the way")


def expect_gradient(call: Any, name: str, expected: torch.Tensor, *, tol: registry.Tolerance | None = None,
                    exercise: registry.Exercise | str | None = None, hint: str | None = None,
                    mistakes: KnownMistakes | None = None, case: str = "") -> torch.Tensor:
    """The gradient of input ``name`` in one :class:`autograder.sandbox.session.Call` of the ``vjp`` harness.

    ``case`` (e.g. ``" (causal mask)"``) is appended to the quantity's name.
    """
    quantity = f"gradient of {name}{case}"
    if call.grad_error:
        fail(f"{quantity}: could not be computed: {call.grad_error}", hint=_GRADIENT_HINT.format(name=name))
    grad = call.grads.get(name)
    if grad is None:
        fail(f"{quantity}: no gradient flows back to {name} (the output does not depend on {name} through autograd)",
             hint=_GRADIENT_HINT.format(name=name))
    return expect_close(grad, expected, quantity=quantity, tol=tol, exercise=exercise, hint=hint, mistakes=mistakes)
