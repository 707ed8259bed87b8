"""What the hidden suites share: random inputs drawn from the grader's generator, the reference's
vector-Jacobian product, statistical bounds, and calls on the propagation devices.

Every random input comes from the ``rng`` fixture (a ``torch.Generator`` seeded afresh for each
grading run), so hidden inputs differ from run to run and hard-coding an answer cannot pass.
Inputs are drawn in float64 on the CPU; references are computed there and converted to the
dtype and device the student's output must have.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from autograder.errors import OutcomeKind
from autograder.sandbox.session import StudentError, StudentSession, VJPResult
from autograder.grading.compare import fail

FLOAT64 = torch.float64
FLOAT32 = torch.float32
FLOAT_DTYPES = (FLOAT64, FLOAT32)

#: Where a device's failure probably comes from, for errors raised only on that device.
_DEVICE_HINTS = {
    "meta": ("the grader also runs your function on 'meta' tensors (shape and dtype, no data) to find tensors "
             "created on the default device instead of the input's, or data moved off the input's device: create "
             "new tensors with device=X.device and dtype=X.dtype (or torch.zeros_like, X.new_zeros), and do not "
             "use .cpu(), .numpy() or .tolist() on the way"),
    "cuda": ("create new tensors on the input's device (device=X.device, torch.zeros_like, X.new_zeros) "
             "and never move data to the CPU (.cpu(), .numpy()) on the way"),
}


# ---------------------------------------------------------------------------------- random inputs

def normal(rng: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Standard normal entries times ``scale``, float64 on the CPU."""
    return torch.randn(shape, generator=rng, dtype=FLOAT64) * scale


def uniform(rng: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=rng, dtype=FLOAT64)


def away_from_zero(rng: torch.Generator, *shape: int, low: float = 0.5, high: float = 2.0) -> torch.Tensor:
    """Entries with magnitude in [low, high) and a random sign: no zeros, so a zero marks a drop."""
    sign = torch.randint(0, 2, shape, generator=rng).to(FLOAT64) * 2 - 1
    return sign * uniform(rng, low, high, *shape)


def integers(rng: torch.Generator, low: int, high: int, *shape: int) -> torch.Tensor:
    """int64 entries in [low, high)."""
    return torch.randint(low, high, shape, generator=rng, dtype=torch.int64)


def number(rng: torch.Generator, low: float, high: float) -> float:
    """One Python float in [low, high)."""
    return float(uniform(rng, low, high))


def integer(rng: torch.Generator, low: int, high: int) -> int:
    """One Python int in [low, high)."""
    return int(torch.randint(low, high, (), generator=rng))


def seed(rng: torch.Generator) -> int:
    """A seed for other generators (gymnasium maps, environment resets)."""
    return int(torch.randint(0, 2**31 - 1, (), generator=rng))


def cast(value: Any, dtype: torch.dtype) -> Any:
    """Floating tensors (also inside lists) converted to ``dtype``; everything else unchanged."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, list):
        return [cast(v, dtype) for v in value]
    return value


def dtype_text(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# -------------------------------------------------------------------------------------- reference

def reference_vjp(fn: Callable[..., torch.Tensor], args: dict[str, Any], grad_wrt: Sequence[str],
                  upstream: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The reference's output and vector-Jacobian products, in float64 on the CPU.

    ``args`` are in signature order; the tensors named in ``grad_wrt`` are differentiated.
    """
    call_args = {}
    for name, value in args.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            value = value.to(FLOAT64) if value.is_floating_point() else value
            value = value.clone().requires_grad_(name in grad_wrt)
        call_args[name] = value
    output = fn(*call_args.values())
    grads = torch.autograd.grad(output, [call_args[n] for n in grad_wrt], upstream.detach().cpu().to(FLOAT64))
    return output.detach(), {n: g.detach() for n, g in zip(grad_wrt, grads)}


def reference_output(fn: Callable[..., torch.Tensor], args: dict[str, Any]) -> torch.Tensor:
    """The reference's output in float64 on the CPU."""
    with torch.no_grad():
        return fn(*[cast(v.detach().cpu(), FLOAT64) if isinstance(v, torch.Tensor) else v
                    for v in args.values()]).detach()


# ------------------------------------------------------------------------------------- statistics

def hoeffding_epsilon(n: int, failure_probability: float) -> float:
    """Half-width of a two-sided Hoeffding interval for the mean of ``n`` independent indicators.

    P(|mean - p| >= eps) <= 2 exp(-2 n eps^2) = failure_probability.
    """
    return math.sqrt(math.log(2.0 / failure_probability) / (2.0 * n))


# ---------------------------------------------------------------------------------------- devices

def value_and_propagation_devices(device: str, propagation_devices: Sequence[str]) -> list[str]:
    """The value device first (so that a stub's NotImplementedError surfaces as "not implemented"),
    then every propagation device, each once."""
    return list(dict.fromkeys([device, *propagation_devices]))


def state_devices(device: str, propagation_devices: Sequence[str]) -> list[str]:
    """Devices for the stateful harnesses (clip_grad, adam): the value device plus every real
    propagation device. ``meta`` is left out: clipping must branch on the norm's value, and the
    adam harness compares gradients with ``torch.equal``, neither of which a data-less tensor has."""
    devices = [device]
    devices += [d for d in propagation_devices if d != "meta" and d not in devices]
    return devices


#: Errors on ``meta`` that say nothing about device handling: the code read a value (``.item()``,
#: ``if``-tests, tensor indices) or used an operator without a meta kernel. Both are fine on a real
#: device, so such a ``meta`` run is inconclusive and skipped rather than failed.
_META_INCONCLUSIVE = ("cannot be called on meta tensors", "Meta kernel", "register_meta", "fake impl",
                      "data-dependent", "data dependent")


def vjp_on(student: StudentSession, function: str, args: dict[str, Any], device: str, **kwargs: Any) -> VJPResult | None:
    """``student.vjp`` on ``device``. On a device other than the value device an exception of the
    student's code becomes a failure that says which device it happened on; ``None`` when a
    ``meta`` run was inconclusive (see ``_META_INCONCLUSIVE``): the caller skips that device."""
    return _on_device(student, device, function, lambda: student.vjp(function, args, device=device, **kwargs))


def run_on(student: StudentSession, function: str, args: dict[str, Any], device: str,
           **kwargs: Any) -> dict[str, Any] | None:
    """``student.run`` (the exercise's calling convention) on ``device``, with the same device
    handling as :func:`vjp_on`."""
    return _on_device(student, device, function, lambda: student.run(function, args, device=device, **kwargs))


def _on_device(student: StudentSession, device: str, function: str, call: Callable[[], Any]) -> Any:
    if device == student.device:
        return call()
    try:
        return call()
    except StudentError as error:
        if error.kind not in (OutcomeKind.EXCEPTION, OutcomeKind.NOT_IMPLEMENTED):
            raise
        if device == "meta" and any(p in error.message for p in _META_INCONCLUSIVE):
            return None
        fail(f"with its inputs on the {device!r} device, `{function}` raised {error.message}",
             hint=_DEVICE_HINTS.get(device.split(":")[0], _DEVICE_HINTS["cuda"]))


def expect_attempted(student: StudentSession, function: str, args: dict[str, Any], changed: dict[str, Any], *,
                     device: str, what: str, owns: str) -> None:
    """The gate of a property test (no mutation, device, ...): its points need the exercise done
    at least in part, never only a property that doing nothing also has. Here the evidence is that
    the output responds to ``what`` (the inputs in ``changed``), as every attempt of the exercise's
    computation does, right or wrong; a constant, an input returned unchanged or a function of the
    other inputs only does not. Outputs without values (not tensors, tensors without data) are left
    to the property test itself, which needs a proper output anyway."""
    first = student.vjp(function, args, device=device).output
    second = student.vjp(function, {**args, **changed}, device=device).output
    comparable = all(isinstance(out, torch.Tensor) and out.device.type != "meta" for out in (first, second))
    if comparable and first.shape == second.shape and torch.equal(first.detach().cpu(), second.detach().cpu()):
        fail(f"`{function}` returned the same output when {what} changed: it does not compute the exercise yet, "
             f"and {owns} earns points only for a function that does",
             hint="implement the exercise first: the value tests say what is wrong")
