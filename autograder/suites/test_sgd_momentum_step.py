"""Hidden tests of ``sgd_momentum_step(params, velocities, lr, momentum)`` (docs/exercises.md §17): one
step of SGD with momentum as ``torch.optim.SGD(params, lr, momentum)`` takes it, in place on the
parameters and velocities, without autograd history.

Runs through the ``optimizer_state`` harness (see ``autograder/suites/_optimizers.py``); expected
trajectories come from ``torch.optim.SGD`` in float64. The other conventions of momentum found in
textbooks (an averaged velocity, dampening, Nesterov, the learning rate inside the velocity) are
named when a trajectory or a velocity matches them.
"""

from __future__ import annotations

import torch

from autograder.course.registry import Tolerance
from autograder.suites import _optimizers as opt
from autograder.suites._common import FLOAT32, FLOAT64, normal, number, state_devices

EXERCISE = "sgd_momentum_step"

#: Parameter shapes: a matrix and a vector.
SHAPES = ((4, 3), (5,))
LR_RANGE = (0.01, 0.1)
MOMENTUM_RANGE = (0.5, 0.95)
TRAJECTORY_STEPS = 8
#: Gradient scales of the tiny- and huge-gradient tests; parameters start at 0 there, so that the
#: updates (about lr * g / (1 - momentum)) are compared relative to their own size.
TINY_SCALE, HUGE_SCALE = 1e-9, 1e8
EXTREME_STEPS = 4

HINT_UPDATE = ("for each parameter: v = momentum * v + g (so the first step gives v = g), then p -= lr * v, "
               "both in place under torch.no_grad()")
HINT_VELOCITY = ("the velocity is v = momentum * v + g, exactly as torch.optim.SGD keeps it: no (1 - momentum) "
                 "factor, and lr only in the parameter update (p -= lr * v)")
HINT_SCALE = ("the update is proportional to the gradients whatever their size: v = momentum * v + g, "
              "p -= lr * v (no normalisation, no eps, no clamping)")

OPTIMIZER = opt.Optimizer(
    EXERCISE, "velocity",
    lambda leaves, lr, momentum: torch.optim.SGD(leaves, lr=lr, momentum=momentum, foreach=False),
    "momentum_buffer",
    lambda lr, momentum: (lambda p, v, g, t: (p - lr * (momentum * v + g), momentum * v + g)),
)


def _mistakes(params, steps, lr, momentum):
    """Known mistakes -> their trajectories (computed only when needed)."""
    m = momentum

    def run(update, **kwargs):
        return lambda: opt.written_out(update, params, steps, **kwargs)

    def dampened(p, v, g, t):  # torch's dampening=momentum: the first step still copies g
        v = g if t == 1 else m * v + (1 - m) * g
        return p - lr * v, v

    def nesterov(p, v, g, t):
        v = m * v + g
        return p - lr * (g + m * v), v

    def old_velocity(p, v, g, t):
        return p - lr * v, m * v + g

    return {
        "v = momentum * v + (1 - momentum) * g, an average of the gradients (the first step then gives "
        "v = (1 - momentum) g): torch.optim.SGD and this course use v = momentum * v + g":
            run(lambda p, v, g, t: (p - lr * (m * v + (1 - m) * g), m * v + (1 - m) * g)),
        "dampening: after the first step v = momentum * v + (1 - momentum) * g; with torch's default "
        "dampening=0 it is v = momentum * v + g": run(dampened),
        "a Nesterov step (p -= lr * (g + momentum * v)): plain momentum moves by p -= lr * v": run(nesterov),
        "a velocity that is not carried over from one step to the next (plain SGD): v = momentum * v + g "
        "rebinds a local name, update the given velocity in place (v.mul_(momentum).add_(g))":
            run(lambda p, v, g, t: (p - lr * (m * v + g), m * v + g), carry=False),
        "lr applied to the velocity (v = momentum * v + lr * g, p -= v): the same parameters, but the "
        "velocity must be torch's v = momentum * v + g":
            run(lambda p, v, g, t: (p - (m * v + lr * g), m * v + lr * g)),
        "v = momentum * v - lr * g, p += v: the same parameters, but the velocity must be torch's "
        "v = momentum * v + g": run(lambda p, v, g, t: (p + (m * v - lr * g), m * v - lr * g)),
        "the parameter moved with the previous velocity: update v first, then p -= lr * v": run(old_velocity),
        "the update added to the parameters: p -= lr * v goes against the gradient":
            run(lambda p, v, g, t: (p + lr * (m * v + g), m * v + g)),
        "momentum ignored (v = g)": run(lambda p, v, g, t: (p - lr * g, g)),
    }


def _params(rng):
    return [normal(rng, *shape) for shape in SHAPES]


def _check(result, params, steps, lr, momentum, device, exercise, hint, *, dtype=FLOAT64, tol=None, states=False,
           state_hint=None):
    """Parameters after every step; the velocity itself only where ``states`` (the first step and the
    velocity test): a velocity kept in another convention (lr inside it) moves the parameters right
    and costs those two tests, not every test."""
    opt.expect_trajectory(result, OPTIMIZER, params, steps, lr, {"momentum": momentum},
                          _mistakes(params, steps, lr, momentum), device, exercise=exercise, hint=hint, dtype=dtype,
                          tol=tol, states=states, state_hint=state_hint)


def _case(rng, count, *, scale=1.0, zero_params=False):
    params = [torch.zeros_like(p) for p in _params(rng)] if zero_params else _params(rng)
    return params, opt.gradients(rng, params, count, scale=scale), number(rng, *LR_RANGE), number(rng, *MOMENTUM_RANGE)


def test_single_step(student, rng, device, exercise):
    params, steps, lr, momentum = _case(rng, 1)
    result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, device)
    _check(result, params, steps, lr, momentum, device, exercise, HINT_UPDATE, states=True, state_hint=HINT_VELOCITY)


def test_trajectory(student, rng, device, exercise):
    params, steps, lr, momentum = _case(rng, TRAJECTORY_STEPS)
    result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, device)
    _check(result, params, steps, lr, momentum, device, exercise, HINT_UPDATE)


def test_velocity(student, rng, device, exercise):
    params, steps, lr, momentum = _case(rng, 3)
    result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, device)
    _check(result, params, steps, lr, momentum, device, exercise, HINT_UPDATE, states=True, state_hint=HINT_VELOCITY)


def _scaled(scale):
    """The dtype's tolerance with atol scaled to the size of the updates (parameters start at 0)."""
    return Tolerance(rtol=1e-7, atol=1e-7 * scale)


def test_tiny_gradients(student, rng, device, exercise):
    params, steps, lr, momentum = _case(rng, EXTREME_STEPS, scale=TINY_SCALE, zero_params=True)
    result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, device)
    _check(result, params, steps, lr, momentum, device, exercise, HINT_SCALE, tol=_scaled(TINY_SCALE))


def test_huge_gradients(student, rng, device, exercise):
    params, steps, lr, momentum = _case(rng, EXTREME_STEPS, scale=HUGE_SCALE, zero_params=True)
    result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, device)
    _check(result, params, steps, lr, momentum, device, exercise, HINT_SCALE, tol=_scaled(HUGE_SCALE))


def test_in_place_no_history(student, rng, device, exercise):
    params, steps, lr, momentum = _case(rng, 2)
    result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, device)
    opt.expect_in_place_without_history(result, EXERCISE, params, steps, device, hint_update=HINT_UPDATE)
    _check(result, params, steps, lr, momentum, device, exercise, HINT_UPDATE)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in state_devices(device, propagation_devices) + (["meta"] if "meta" in propagation_devices else []):
        for dtype in (FLOAT32, FLOAT64):
            params, steps, lr, momentum = _case(rng, 2)
            params, steps = [p.to(dtype) for p in params], [[g.to(dtype) for g in s] for s in steps]
            result = opt.run(student, EXERCISE, params, steps, lr, {"momentum": momentum}, where, dtype)
            if result is None:
                continue
            opt.expect_device(result, OPTIMIZER, params, steps, lr, {"momentum": momentum},
                              _mistakes(params, steps, lr, momentum), where, dtype, exercise=exercise, hint=HINT_UPDATE,
                              states=False)
