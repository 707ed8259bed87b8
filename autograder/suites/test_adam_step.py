"""Hidden tests of ``adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8)``
(docs/exercises.md §6): one Adam update with bias correction, in place, without autograd history.

Runs through its calling convention, ``OptimizerState`` (``autograder/course/conventions.py``): leaf parameters with
``requires_grad=True``, zero states, and for t = 1..T ``p.grad = step gradient`` then
``adam_step(params, states, lr, t, ...)``. Expected trajectories come from ``torch.optim.Adam``
run here in float64 on the CPU; known mistakes are the same update written out with one thing
changed (no bias correction, eps inside the square root, ...).
"""

from __future__ import annotations

import math

import torch

from autograder.course.hints import ADAM_STEP_EPS as HINT_EPS, ADAM_STEP_UPDATE as HINT_UPDATE
from autograder.grading.compare import expect, expect_close, expect_like, fail, matches, tolerance_for
from autograder.suites._common import FLOAT32, FLOAT64, dtype_text, normal, number, run_on, state_devices, uniform

EXERCISE = "adam_step"

#: The contract's defaults, used when a test leaves the options out (the student's defaults apply).
DEFAULTS = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
#: Parameter shapes: a matrix and a vector.
SHAPES = ((4, 3), (5,))
#: Learning rates are drawn from this range.
LR_RANGE = (0.01, 0.05)
#: Gradient entries of the value tests: magnitudes in [1, 2), random signs. Bounded away from zero so
#: that where eps goes (inside the root, before the bias correction) moves a parameter by less than
#: lr * 3.2e-7 per step, far below the tolerance: eps placement is owned by test_eps_outside_sqrt
#: alone (eps = 1 there), and no other test passes or fails with the drawn gradients.
GRAD_MAGNITUDE = (1.0, 2.0)
#: Steps of the trajectory test, with options other than the defaults (passed explicitly; eps so
#: small that only the betas tell hard-coded defaults apart, see GRAD_MAGNITUDE).
TRAJECTORY_STEPS = 6
TRAJECTORY_OPTIONS = {"beta1": 0.8, "beta2": 0.99, "eps": 1e-10}
#: Gradient scale of the tests with several steps (trajectory, bias correction, device): a fixed or
#: misplaced eps of up to 1e-6 moves no parameter by more than a tenth of the tolerance there.
TRAJECTORY_GRAD_SCALE = 10.0
#: Steps with one constant gradient in the bias-correction test: a corrected Adam then moves every
#: entry by almost exactly lr per step, an uncorrected one by about 3 lr at t = 1.
BIAS_STEPS = 3
#: eps so large that adding it inside or outside the square root makes a visible difference.
LARGE_EPS = 1.0
EPS_STEPS = 3
#: Gradients of the tiny-gradient test: far below the default eps, with some exact zeros.
TINY_SCALE = 1e-9
TINY_STEPS = 3
ZERO_FRACTION = 0.25

HINT_STATES = ("update the given states in place (v.mul_(beta1).add_((1 - beta1) * g), or v[:] = ...): "
               "v = beta1 * v + ... only rebinds a local name and the states list keeps the old moments")
HINT_BIAS = ("bias correction divides by 1 - beta1^t and 1 - beta2^t with the 1-based step number t you are given "
             "(at t = 1: 1 - beta1 and 1 - beta2); 1 - beta^0 = 0 would divide by zero")
HINT_EPS_AFTER_CORRECTION = ("correct both moments first (v_hat = v / (1 - beta1^t), s_hat = s / (1 - beta2^t)), "
                             "then add eps after the square root: sqrt(s_hat) + eps, as torch.optim.Adam does")
HINT_TINY = ("eps keeps the update finite and small where gradients are tiny or zero: "
             "p -= lr * v_hat / (sqrt(s_hat) + eps) (0 / (0 + eps) = 0)")


def _params(rng: torch.Generator) -> list[torch.Tensor]:
    return [normal(rng, *shape) for shape in SHAPES]


def _torch_adam(params, steps, lr, options):
    """Parameters after every step and the final (v, s) of ``torch.optim.Adam``, float64 CPU."""
    opts = {**DEFAULTS, **options}
    leaves = [p.detach().to(FLOAT64).clone().requires_grad_(True) for p in params]
    optimizer = torch.optim.Adam(leaves, lr=lr, betas=(opts["beta1"], opts["beta2"]), eps=opts["eps"], foreach=False)
    history = []
    for step in steps:
        for p, g in zip(leaves, step):
            p.grad = g.detach().to(FLOAT64).clone()
        optimizer.step()
        history.append([p.detach().clone() for p in leaves])
    states = [(optimizer.state[p]["exp_avg"].clone(), optimizer.state[p]["exp_avg_sq"].clone()) for p in leaves]
    return history, states


def _written_out(params, steps, lr, beta1, beta2, eps, *, correct_v=True, correct_s=True, t_shift=0,
                 eps_inside=False, sign=-1.0, carry_states=True, eps_before_correction=False,
                 eps_in_s_before_correction=False):
    """Adam written out with one thing changeable: the known mistakes' trajectories (float64)."""
    ps = [p.detach().to(FLOAT64).clone() for p in params]
    states = [(torch.zeros_like(p), torch.zeros_like(p)) for p in ps]
    history = []
    for t, step in enumerate(steps, start=1):
        for i, (p, g) in enumerate(zip(ps, step)):
            g = g.to(FLOAT64)
            v, s = states[i] if carry_states else (torch.zeros_like(p), torch.zeros_like(p))
            v = beta1 * v + (1 - beta1) * g
            s = beta2 * s + (1 - beta2) * g * g
            states[i] = (v, s)
            v_hat = v / (1 - beta1 ** (t + t_shift)) if correct_v else v
            s_hat = s / (1 - beta2 ** (t + t_shift)) if correct_s else s
            if eps_before_correction:  # (sqrt(s) + eps) / sqrt(1 - beta2^t): the paper's "efficient" form
                denominator = (torch.sqrt(s) + eps) / math.sqrt(1 - beta2 ** t)
            elif eps_in_s_before_correction:  # sqrt((s + eps) / (1 - beta2^t))
                denominator = torch.sqrt((s + eps) / (1 - beta2 ** t))
            else:
                denominator = torch.sqrt(s_hat + eps) if eps_inside else torch.sqrt(s_hat) + eps
            p += sign * lr * v_hat / denominator
        history.append([p.clone() for p in ps])
    return history


def _mistakes(params, steps, lr, options):
    """Known mistakes -> their parameter trajectories (computed when first needed)."""
    o = {**DEFAULTS, **options}
    b1, b2, eps = o["beta1"], o["beta2"], o["eps"]

    def run(**change):
        return lambda: _written_out(params, steps, lr, b1, b2, eps, **change)

    mistakes = {
        "Adam without bias correction (v and s used as they are): " + HINT_BIAS: run(correct_v=False, correct_s=False),
        "bias correction of v only: s_hat = s / (1 - beta2^t) too": run(correct_s=False),
        "bias correction of s only: v_hat = v / (1 - beta1^t) too": run(correct_v=False),
        "bias correction with t + 1: t is already 1-based, use 1 - beta^t": run(t_shift=1),
        "eps inside the square root: " + HINT_EPS: run(eps_inside=True),
        "moments v and s that are not carried over from one step to the next: " + HINT_STATES:
            run(carry_states=False),
        "the update added to the parameters: p -= lr * v_hat / (sqrt(s_hat) + eps) goes against the gradient":
            run(sign=1.0),
        "beta1 and beta2 swapped: beta1 (0.9 by default) is for v, beta2 (0.999) for s":
            lambda: _written_out(params, steps, lr, b2, b1, eps),
        "eps added before the bias correction ((sqrt(s) + eps) / sqrt(1 - beta2^t), the Adam paper's "
        "'efficient' form, scales eps by 1 / sqrt(1 - beta2^t)): " + HINT_EPS_AFTER_CORRECTION:
            run(eps_before_correction=True),
        "eps added to s before the bias correction and inside the square root (sqrt((s + eps) / (1 - beta2^t))): "
        + HINT_EPS_AFTER_CORRECTION: run(eps_in_s_before_correction=True),
        "eps inside the square root AND moments v, s not carried over from one step to the next (two mistakes): "
        + HINT_EPS + "; " + HINT_STATES: run(eps_inside=True, carry_states=False),
    }
    for fixed in (1e-8, 1e-6):  # named before "no eps", which a tiny fixed eps also matches
        if abs(eps - fixed) > 1e-12:
            mistakes[f"the eps argument ignored (a fixed eps = {fixed:g} instead of the {eps:g} passed in): "
                     "use the eps parameter"] = (lambda fixed=fixed: _written_out(params, steps, lr, b1, b2, fixed))
    mistakes["no eps in the denominator: " + HINT_TINY] = lambda: _written_out(params, steps, lr, b1, b2, 0.0)
    if options:
        d = DEFAULTS
        mistakes["the default beta1, beta2 and eps instead of the values passed in: use the arguments"] = (
            lambda: _written_out(params, steps, lr, d["beta1"], d["beta2"], d["eps"]))
    return mistakes


def _run(student, params, steps, lr, options, device, dtype=FLOAT64):
    args = {"params": [p.to(dtype) for p in params], "steps": [[g.to(dtype) for g in step] for step in steps],
            "lr": lr, **options}
    return run_on(student, EXERCISE, args, device)


def _expect_trajectory(result, params, steps, lr, options, device, exercise, hint, dtype=FLOAT64, states=True):
    expected, expected_states = _torch_adam(params, steps, lr, options)
    got = result["params"]
    tol = tolerance_for(dtype, exercise)
    candidates = _mistakes(params, steps, lr, options)
    named: dict[str, list] | None = None  # mistakes that explain the whole trajectory, found on the first miss
    for t, (want_step, got_step) in enumerate(zip(expected, got), start=1):
        for i, (want, actual) in enumerate(zip(want_step, got_step)):
            want = want.to(device, dtype)
            if named is None and not matches(actual, want, tol):
                named = {}
                for description, make in candidates.items():
                    trajectory = make()
                    if all(matches(a, c, tol) for a_step, c_step in zip(got, trajectory)
                           for a, c in zip(a_step, c_step)):
                        named[description] = trajectory
            mistakes = {d: trajectory[t - 1][i] for d, trajectory in (named or {}).items()}
            expect_close(actual, want, quantity=f"parameter {i} after step {t}", exercise=exercise, hint=hint,
                         mistakes=mistakes)
    if not states:
        return
    for i, ((v, s), (want_v, want_s)) in enumerate(zip(result["states"], expected_states)):
        for name, actual, want in (("v", v, want_v), ("s", s, want_s)):
            expect_close(actual, want.to(device, dtype), quantity=f"state {name} of parameter {i} after step {len(steps)}",
                         exercise=exercise, hint=HINT_STATES,
                         mistakes={"the initial zeros: " + HINT_STATES: torch.zeros_like(want)})


def _bounded(rng, shape):
    magnitude = uniform(rng, *GRAD_MAGNITUDE, *shape)
    return torch.where(torch.rand(shape, generator=rng) < 0.5, -magnitude, magnitude)


def _gradients(rng, params, count, scale=1.0):
    return [[_bounded(rng, p.shape) * scale for p in params] for _ in range(count)]


def test_single_step(student, rng, device, exercise):
    params = _params(rng)
    steps = _gradients(rng, params, 1)
    lr = number(rng, *LR_RANGE)
    result = _run(student, params, steps, lr, {}, device)
    _expect_trajectory(result, params, steps, lr, {}, device, exercise, HINT_UPDATE)


def test_trajectory(student, rng, device, exercise):
    params = _params(rng)
    # Gradients ten times larger: an eps of up to 1e-6, wherever it is put, moves no parameter by
    # more than a tenth of the tolerance over the whole trajectory (owned by test_eps_outside_sqrt).
    steps = _gradients(rng, params, TRAJECTORY_STEPS, scale=TRAJECTORY_GRAD_SCALE)
    lr = number(rng, *LR_RANGE)
    result = _run(student, params, steps, lr, TRAJECTORY_OPTIONS, device)
    _expect_trajectory(result, params, steps, lr, TRAJECTORY_OPTIONS, device, exercise, HINT_UPDATE)


def test_bias_correction(student, rng, device, exercise):
    params = _params(rng)
    constant = _gradients(rng, params, 1, scale=TRAJECTORY_GRAD_SCALE)[0]  # several steps: see test_trajectory
    steps = [constant] * BIAS_STEPS
    lr = number(rng, *LR_RANGE)
    result = _run(student, params, steps, lr, {}, device)
    _expect_trajectory(result, params, steps, lr, {}, device, exercise, HINT_BIAS, states=False)


def test_eps_outside_sqrt(student, rng, device, exercise):
    params = _params(rng)
    steps = _gradients(rng, params, EPS_STEPS)
    lr = number(rng, *LR_RANGE)
    options = {"eps": LARGE_EPS}
    result = _run(student, params, steps, lr, options, device)
    _expect_trajectory(result, params, steps, lr, options, device, exercise, HINT_EPS, states=False)


def test_tiny_gradients(student, rng, device, exercise):
    params = _params(rng)
    steps = []
    for _ in range(TINY_STEPS):
        step = []
        for p in params:
            g = normal(rng, *p.shape, scale=TINY_SCALE)
            g[torch.rand(p.shape, generator=rng) < ZERO_FRACTION] = 0.0
            step.append(g)
        steps.append(step)
    lr = number(rng, *LR_RANGE)
    result = _run(student, params, steps, lr, {}, device)
    # This test owns "there is an eps": finite, small updates where gradients are tiny or zero.
    # Its points need an update (parameters that move); doing nothing is finite too.
    moved = any(isinstance(p, torch.Tensor) and p.device.type != "meta" and not torch.equal(p.detach().cpu(), p0)
                for step in result["params"] for p, p0 in zip(step, params))
    expect(moved, f"no parameter changed in {len(steps)} steps of adam_step with tiny (but not all zero) gradients: "
           "the step does not update the parameters yet, and finite updates earn points only for a step that makes them",
           hint="implement the update first: test_single_step and test_trajectory say what is wrong")
    # Where the eps goes is test_eps_outside_sqrt's: its misplacements pass here.
    for t, step in enumerate(result["params"], start=1):
        for i, p in enumerate(step):
            if isinstance(p, torch.Tensor) and p.device.type != "meta" and not bool(torch.isfinite(p).all()):
                fail(f"parameter {i} after step {t} with tiny or zero gradients has nan or inf entries: "
                     "no eps in the denominator (0 / 0)", hint=HINT_TINY)
    o = DEFAULTS
    misplaced = [_written_out(params, steps, lr, o["beta1"], o["beta2"], o["eps"], **change)
                 for change in ({"eps_inside": True}, {"eps_before_correction": True},
                                {"eps_in_s_before_correction": True})]
    misplaced += [_written_out(params, steps, lr, o["beta1"], o["beta2"], fixed) for fixed in (1e-6,)]
    tol = tolerance_for(FLOAT64, exercise)
    if any(all(matches(a, c, tol) for a_step, c_step in zip(result["params"], trajectory) for a, c in zip(a_step, c_step))
           for trajectory in misplaced):
        return
    _expect_trajectory(result, params, steps, lr, {}, device, exercise, HINT_TINY, states=False)


def test_in_place_no_history(student, rng, device, exercise):
    params = _params(rng)
    steps = _gradients(rng, params, 2)
    lr = number(rng, *LR_RANGE)
    result = _run(student, params, steps, lr, {}, device)
    for t, value in enumerate(result["returned"], start=1):
        if value is not None:
            what = getattr(value, "what", None) or f"a {type(value).__name__}"
            fail(f"adam_step returned {what} at step {t}; it must return None",
                 hint="adam_step works in place on the parameters and states: no return value")
    expect(result.get("storage_replaced") is not True,
           "after adam_step the parameters or states are the same tensor objects, but their storage was replaced "
           "(p.data = p.data - ... or v.data = ... assigns a new tensor; views of the old one never see the update)",
           hint="update in place: p.data.sub_(...) or p -= ... under torch.no_grad(), v.mul_(beta1).add_(...)")
    expect(result["same_objects"] is True, "after adam_step the parameters or states are not the tensors passed in",
           hint=("update in place under torch.no_grad() (p -= ..., p.sub_(...), v.mul_(...)); "
                 "p = p - ... or states[i] = (v, s) binds new tensors that the caller never sees"))
    expect(result["history_free"] is True, "after adam_step a parameter records autograd history (it has a grad_fn "
           "or no longer requires grad)", hint="do the update inside `with torch.no_grad():` (or on p.data)")
    expect(result["grads_kept"] is True, "adam_step changed or cleared the gradients (p.grad)",
           hint="leave p.grad as it is: zeroing gradients is the training loop's job, not the optimizer step's")
    # in place and without history is only worth points for the right update (not any change)
    _expect_trajectory(result, params, steps, lr, {}, device, exercise, HINT_UPDATE)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in state_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            params = [p.to(dtype) for p in _params(rng)]
            steps = [[g.to(dtype) for g in step] for step in _gradients(rng, params, 2, scale=TRAJECTORY_GRAD_SCALE)]
            lr = number(rng, *LR_RANGE)
            result = _run(student, params, steps, lr, {}, where, dtype)
            if result is None:
                continue
            for t, step in enumerate(result["params"], start=1):
                for i, p in enumerate(step):
                    expect_like(p, shape=params[i].shape, dtype=dtype, device=where,
                                quantity=f"{dtype_text(dtype)} parameter {i} on {where} after step {t}")
            _expect_trajectory(result, params, steps, lr, {}, where, exercise, HINT_UPDATE, dtype)
