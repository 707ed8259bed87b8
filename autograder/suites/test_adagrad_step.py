"""Hidden tests of ``adagrad_step(params, states, lr, eps=1e-10)`` (docs/exercises.md §18): one Adagrad
step as ``torch.optim.Adagrad(params, lr, eps=eps)`` takes it, in place on the parameters and the
sums of squared gradients, without autograd history.

Runs through the ``optimizer_state`` harness (see ``autograder/suites/_optimizers.py``); expected
trajectories come from ``torch.optim.Adagrad`` in float64. Known mistakes are the update written
out with one thing changed (a decaying average instead of the sum, eps inside the root, no root,
the state updated after it is used, ...).
"""

from __future__ import annotations

import torch

from autograder.suites import _optimizers as opt

EXERCISE = "adagrad_step"

DEFAULTS = {"eps": 1e-10}
SHAPES = ((4, 3), (5,))
LR_RANGE = (0.01, 0.1)
TRAJECTORY_STEPS = 8
#: eps so large that adding it inside or outside the square root makes a visible difference.
LARGE_EPS = 1.0
EPS_STEPS = 3
#: Gradients far below sqrt(eps) = 1e-5 with some exact zeros, and gradients far above 1.
TINY_SCALE, HUGE_SCALE = 1e-9, 1e8
ZERO_FRACTION = 0.25
EXTREME_STEPS = 4

HINT_UPDATE = ("for each parameter: s += g * g (a running sum), then p -= lr * g / (sqrt(s) + eps), both in place "
               "under torch.no_grad()")
HINT_EPS = "eps is added after the square root: sqrt(s) + eps, not sqrt(s + eps)"
HINT_TINY = ("eps keeps the step finite where the gradients are tiny or zero: p -= lr * g / (sqrt(s) + eps) "
             "(0 / (0 + eps) = 0), with eps outside the square root")
HINT_HUGE = ("the step is lr * g / (sqrt(s) + eps), about lr whatever the size of g: divide by the square root of the "
             "running sum of squares")

OPTIMIZER = opt.Optimizer(
    EXERCISE, "sum of squared gradients",
    lambda leaves, lr, eps=DEFAULTS["eps"]: torch.optim.Adagrad(leaves, lr=lr, eps=eps, foreach=False),
    "sum",
    lambda lr, eps=DEFAULTS["eps"]: (lambda p, s, g, t: (p - lr * g / ((s + g * g).sqrt() + eps), s + g * g)),
)


def _mistakes(params, steps, lr, options):
    eps = {**DEFAULTS, **options}["eps"]

    def run(update, **kwargs):
        return lambda: opt.written_out(update, params, steps, **kwargs)

    def decaying(alpha):
        return run(lambda p, s, g, t: (p - lr * g / ((alpha * s + (1 - alpha) * g * g).sqrt() + eps),
                                       alpha * s + (1 - alpha) * g * g))

    mistakes = {
        f"a decaying average of the squared gradients (alpha = {a}): that is RMSProp; Adagrad sums them, s += g * g":
            decaying(a) for a in (0.9, 0.99, 0.999)
    }
    mistakes.update({
        "eps inside the square root: " + HINT_EPS:
            run(lambda p, s, g, t: (p - lr * g / (s + g * g + eps).sqrt(), s + g * g)),
        "no square root: p -= lr * g / (sqrt(s) + eps)":
            run(lambda p, s, g, t: (p - lr * g / (s + g * g + eps), s + g * g)),
        "the sum used before it is updated: add g * g to s first, then divide by sqrt(s) + eps":
            run(lambda p, s, g, t: (p - lr * g / (s.sqrt() + eps), s + g * g)),
        "a sum that is not carried over from one step to the next: s = s + g * g rebinds a local name, update "
        "the given state in place (s.add_(g * g), s += g * g)":
            run(lambda p, s, g, t: (p - lr * g / ((s + g * g).sqrt() + eps), s + g * g), carry=False),
        "lr applied to the state (s += lr * g * g): lr belongs to the step only":
            run(lambda p, s, g, t: (p - lr * g / ((s + lr * g * g).sqrt() + eps), s + lr * g * g)),
        "the update added to the parameters: p -= lr * g / (sqrt(s) + eps) goes against the gradient":
            run(lambda p, s, g, t: (p + lr * g / ((s + g * g).sqrt() + eps), s + g * g)),
    })
    if "eps" in options:
        d = DEFAULTS["eps"]
        mistakes["the default eps instead of the value passed in: use the argument"] = (
            run(lambda p, s, g, t: (p - lr * g / ((s + g * g).sqrt() + d), s + g * g)))
    return mistakes


CHECKS = opt.Checks(OPTIMIZER, SHAPES, LR_RANGE, _mistakes, HINT_UPDATE)
_run_and_check = CHECKS.run_and_check


def test_single_step(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, 1, HINT_UPDATE)


def test_trajectory(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, TRAJECTORY_STEPS, HINT_UPDATE)


def test_eps_outside_sqrt(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, EPS_STEPS, HINT_EPS, options={"eps": LARGE_EPS}, states=False)


def test_tiny_gradients(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, EXTREME_STEPS, HINT_TINY, scale=TINY_SCALE,
                   zero_fraction=ZERO_FRACTION, states=False)


def test_huge_gradients(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, EXTREME_STEPS, HINT_HUGE, scale=HUGE_SCALE, states=False)


def test_in_place_no_history(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, 2, HINT_UPDATE, in_place=True)


def test_device(student, rng, device, propagation_devices, exercise):
    CHECKS.check_device(student, rng, device, propagation_devices, exercise)
