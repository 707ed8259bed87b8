"""Hidden tests of ``rmsprop_step(params, states, lr, alpha=0.99, eps=1e-8)`` (docs/exercises.md §19): one
RMSProp step as ``torch.optim.RMSprop(params, lr, alpha, eps)`` takes it, in place on the parameters
and the leaky averages of squared gradients, without autograd history.

Runs through the ``optimizer_state`` harness (see ``autograder/suites/_optimizers.py``); expected
trajectories come from ``torch.optim.RMSprop`` in float64. Known mistakes are the update written
out with one thing changed (no root, eps inside it, alpha and 1 - alpha swapped, Adagrad's sum,
the state updated after it is used, ...).
"""

from __future__ import annotations

import torch

from autograder.suites import _optimizers as opt

EXERCISE = "rmsprop_step"

DEFAULTS = {"alpha": 0.99, "eps": 1e-8}
#: Options of the trajectory test, other than the defaults (passed explicitly).
TRAJECTORY_OPTIONS = {"alpha": 0.9, "eps": 1e-6}
SHAPES = ((4, 3), (5,))
LR_RANGE = (0.001, 0.01)
TRAJECTORY_STEPS = 8
#: eps so large that adding it inside or outside the square root makes a visible difference.
LARGE_EPS = 1.0
EPS_STEPS = 3
#: Gradients far below sqrt(eps) = 1e-4 with some exact zeros, and gradients far above 1.
TINY_SCALE, HUGE_SCALE = 1e-9, 1e8
ZERO_FRACTION = 0.25
EXTREME_STEPS = 4

HINT_UPDATE = ("for each parameter: s = alpha * s + (1 - alpha) * g * g (a leaky average), then "
               "p -= lr * g / (sqrt(s) + eps), both in place under torch.no_grad()")
HINT_EPS = "eps is added after the square root: sqrt(s) + eps, not sqrt(s + eps)"
HINT_TINY = ("eps keeps the step finite where the gradients are tiny or zero: p -= lr * g / (sqrt(s) + eps) "
             "(0 / (0 + eps) = 0), with eps outside the square root")
HINT_HUGE = ("the step is lr * g / (sqrt(s) + eps), about lr whatever the size of g: divide by the square root of the "
             "running sum of squares")

OPTIMIZER = opt.Optimizer(
    EXERCISE, "average of squared gradients",
    lambda leaves, lr, alpha=DEFAULTS["alpha"], eps=DEFAULTS["eps"]: torch.optim.RMSprop(leaves, lr=lr, alpha=alpha, eps=eps,
                                                                                         foreach=False),
    "square_avg",
    lambda lr, alpha=DEFAULTS["alpha"], eps=DEFAULTS["eps"]: (
        lambda p, s, g, t: (p - lr * g / ((alpha * s + (1 - alpha) * g * g).sqrt() + eps), alpha * s + (1 - alpha) * g * g)),
)


def _mistakes(params, steps, lr, options):
    o = {**DEFAULTS, **options}
    alpha, eps = o["alpha"], o["eps"]

    def run(update, **kwargs):
        return lambda: opt.written_out(update, params, steps, **kwargs)

    def rule(a, e, *, root=True, inside=False, before=False, scale_state=1.0, sign=-1.0):
        def update(p, s, g, t):
            new = a * s + (1 - a) * scale_state * g * g
            used = s if before else new
            denominator = (used + e).sqrt() if inside else (used.sqrt() + e if root else used + e)
            return p + sign * lr * g / denominator, new
        return update

    mistakes = {
        "no square root: p -= lr * g / (sqrt(s) + eps)": run(rule(alpha, eps, root=False)),
        "eps inside the square root: " + HINT_EPS: run(rule(alpha, eps, inside=True)),
        "alpha and 1 - alpha swapped: s = alpha * s + (1 - alpha) * g * g keeps most of the old average":
            run(rule(1 - alpha, eps)),
        "Adagrad's running sum (s += g * g) instead of the leaky average s = alpha * s + (1 - alpha) * g * g":
            run(lambda p, s, g, t: (p - lr * g / ((s + g * g).sqrt() + eps), s + g * g)),
        "the average used before it is updated: update s first, then divide by sqrt(s) + eps":
            run(rule(alpha, eps, before=True)),
        "an average that is not carried over from one step to the next: s = alpha * s + ... rebinds a local "
        "name, update the given state in place (s.mul_(alpha).add_(...))": run(rule(alpha, eps), carry=False),
        "lr applied to the state (s = alpha * s + (1 - alpha) * lr * g * g): lr belongs to the step only":
            run(rule(alpha, eps, scale_state=lr)),
        "the update added to the parameters: p -= lr * g / (sqrt(s) + eps) goes against the gradient":
            run(rule(alpha, eps, sign=1.0)),
    }
    if options:
        d = DEFAULTS
        mistakes["the default alpha and eps instead of the values passed in: use the arguments"] = (
            run(rule(d["alpha"], d["eps"])))
    return mistakes


CHECKS = opt.Checks(OPTIMIZER, SHAPES, LR_RANGE, _mistakes, HINT_UPDATE)
_run_and_check = CHECKS.run_and_check


def test_single_step(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, 1, HINT_UPDATE)


def test_trajectory(student, rng, device, exercise):
    _run_and_check(student, rng, device, exercise, TRAJECTORY_STEPS, HINT_UPDATE, options=TRAJECTORY_OPTIONS)


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
