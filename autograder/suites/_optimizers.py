"""What the hidden suites of the optimizer steps with one state tensor per parameter share
(``sgd_momentum_step``, ``adagrad_step``, ``rmsprop_step``: docs/exercises.md §17-19).

They are called as ``adam_step`` is, through the ``optimizer_state`` harness (see
``autograder/worker/harness.py``): leaf parameters with ``requires_grad=True``, one zero state like
each, and for every step ``p.grad = that step's gradient`` then ``step(params, states, lr,
**options)``. The harness reports data (parameters after every step, states and gradients, return
values, identities and autograd facts); every verdict is made here.

Expected trajectories come from the ``torch.optim`` twin run here in float64 on the CPU; known
mistakes are the same update written out with one thing changed (an :class:`Update`), so that a
failure can say which mistake the student's trajectory matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from autograder.course.registry import Tolerance
from autograder.grading.compare import expect, expect_close, expect_like, fail, matches, tolerance_for
from autograder.suites._common import (FLOAT32, FLOAT64, away_from_zero, dtype_text, normal, number, run_on,
                                       state_devices)

HARNESS = "optimizer_state"

#: An update rule written out: (p, s, g, t) -> (new p, new s), all float64 tensors, t 1-based.
Update = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]

HINT_IN_PLACE = ("update the given tensors in place under torch.no_grad() (p -= ..., p.sub_(...), s.mul_(...).add_(...), "
                 "s += ...): p = p - ... or states[i] = ... binds new tensors that the caller never sees")
HINT_HISTORY = "do the update inside `with torch.no_grad():` (an optimizer step is not part of the model's computation)"
HINT_GRADS = "leave p.grad as it is: zeroing gradients is the training loop's job, not the optimizer step's"
HINT_RETURN = "the step works in place on the parameters and states: return nothing (None)"


@dataclass(frozen=True)
class Optimizer:
    """One exercise: its torch twin and the contract's update."""

    exercise: str
    state: str  # what the state is called in messages ("velocity", "sum of squared gradients", ...)
    make_torch: Callable[..., torch.optim.Optimizer]  # (leaves, lr, **options) -> the twin
    state_key: str  # the twin's per-parameter state that mirrors the exercise's
    update: Callable[..., Update]  # (lr, **options) -> the contract's update, for the mistakes' variants

    def twin(self, params: list[torch.Tensor], steps: list[list[torch.Tensor]], lr: float,
             options: Mapping[str, Any]) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
        """Parameters after every step and the final states of the torch twin, float64 on the CPU."""
        leaves = [p.detach().to(FLOAT64).clone().requires_grad_(True) for p in params]
        optimizer = self.make_torch(leaves, lr, **options)
        history = []
        for step in steps:
            for p, g in zip(leaves, step):
                p.grad = g.detach().to(FLOAT64).clone()
            optimizer.step()
            history.append([p.detach().clone() for p in leaves])
        # SGD with momentum 0 keeps no buffer: its velocity is then the last gradient.
        states = [optimizer.state[p].get(self.state_key, p.grad).detach().clone() for p in leaves]
        return history, states


def written_out(update: Update, params, steps, *, carry: bool = True) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
    """The trajectory of ``update`` (float64): parameters after every step and the final states.
    ``carry=False``: the state starts from zero at every step (a state rebound, not updated in place),
    and the caller's states stay zero."""
    ps = [p.detach().to(FLOAT64).clone() for p in params]
    ss = [torch.zeros_like(p) for p in ps]
    history = []
    for t, step in enumerate(steps, start=1):
        for i, g in enumerate(step):
            ps[i], s = update(ps[i], ss[i] if carry else torch.zeros_like(ps[i]), g.to(FLOAT64), t)
            if carry:
                ss[i] = s
        history.append([p.clone() for p in ps])
    return history, ss


def run(student, exercise: str, params, steps, lr: float, options: Mapping[str, Any], device: str,
        dtype: torch.dtype = FLOAT64) -> dict[str, Any] | None:
    """The student's step through the harness on ``device`` (None: an inconclusive meta run)."""
    args = {"params": [p.to(dtype) for p in params], "steps": [[g.to(dtype) for g in step] for step in steps],
            "lr": lr, "options": dict(options), "state_size": 1}
    return run_on(student, exercise, args, device)


#: Magnitudes of the gradients (times a test's scale). Bounded away from zero so that eps decides
#: nothing in the ordinary tests: RMSProp's eps = 1e-8 inside the square root would otherwise change
#: a step by more than the tolerance for some seeds and not for others (|g| < 0.3 or so); the tests
#: where eps matters (a large eps, tiny gradients) are the ones that say so.
GRADIENT_MAGNITUDE = (1.0, 4.0)


def gradients(rng: torch.Generator, params, count: int, *, scale: float = 1.0, zero_fraction: float = 0.0):
    """``count`` steps of gradients shaped like the params, random signs and magnitudes in
    GRADIENT_MAGNITUDE times ``scale``, a fraction of the entries exactly zero."""
    steps = []
    for _ in range(count):
        step = []
        for p in params:
            g = away_from_zero(rng, *p.shape, low=GRADIENT_MAGNITUDE[0], high=GRADIENT_MAGNITUDE[1]) * scale
            if zero_fraction:
                g[torch.rand(p.shape, generator=rng) < zero_fraction] = 0.0
            step.append(g)
        steps.append(step)
    return steps


def expect_trajectory(result: Mapping[str, Any], optimizer: Optimizer, params, steps, lr: float,
                      options: Mapping[str, Any], mistakes: Mapping[str, Callable[[], tuple]], device: str, *,
                      exercise, hint: str, dtype: torch.dtype = FLOAT64, tol: Tolerance | None = None,
                      states: bool = True, state_hint: str | None = None) -> None:
    """Every parameter after every step, then (``states``) every final state, as the torch twin's.

    On the first mismatch, the known mistakes whose whole trajectory the student's matches are
    found once and named in that and every later message.
    """
    expected, expected_states = optimizer.twin(params, steps, lr, options)
    tol = tol or tolerance_for(dtype, exercise)
    got = result["params"]
    named: dict[str, tuple] | None = None

    def explain() -> dict[str, tuple]:
        found = {}
        for description, make in mistakes.items():
            history, final = make()
            same_params = all(matches(a, c.to(dtype), tol) for a_step, c_step in zip(got, history)
                              for a, c in zip(a_step, c_step))
            same_states = all(matches(a[0] if isinstance(a, list) and a else a, c.to(dtype), tol)
                              for a, c in zip(result["states"], final))
            if same_params and (same_states or not states):
                found[description] = (history, final)
        return found

    for t, (want_step, got_step) in enumerate(zip(expected, got), start=1):
        for i, (want, actual) in enumerate(zip(want_step, got_step)):
            want = want.to(device, dtype)
            if named is None and not matches(actual, want, tol):
                named = explain()
            known = {d: trajectory[t - 1][i].to(dtype) for d, (trajectory, _) in (named or {}).items()}
            expect_close(actual, want, quantity=f"parameter {i} after step {t}", tol=tol, exercise=exercise,
                         hint=hint, mistakes=known)
    if not states:
        return
    for i, (state, want) in enumerate(zip(result["states"], expected_states)):
        actual = state[0] if isinstance(state, list) and state else state
        if named is None and not matches(actual, want.to(device, dtype), tol):
            named = explain()
        known = {d: final[i].to(dtype) for d, (_, final) in (named or {}).items()}
        known.setdefault(f"the initial zeros: the {optimizer.state} was not updated in place. {HINT_IN_PLACE}",
                         torch.zeros_like(want, dtype=dtype))
        expect_close(actual, want.to(device, dtype), quantity=f"{optimizer.state} of parameter {i} after step {len(steps)}",
                     tol=tol, exercise=exercise, hint=state_hint or HINT_IN_PLACE, mistakes=known)


def expect_in_place_without_history(result: Mapping[str, Any], exercise: str, params, steps, device: str,
                                    *, hint_update: str) -> None:
    """Judged from the harness's facts: None returned, the very tensors updated (same objects and
    storage), no autograd history, gradients untouched, and the parameters actually moved."""
    for t, value in enumerate(result["returned"], start=1):
        if value is not None:
            what = getattr(value, "what", None) or f"a {type(value).__name__}"
            fail(f"{exercise} returned {what} at step {t}; it must return None", hint=HINT_RETURN)
    before, after = result["identities_before"], result["identities_after"]
    count = len(params)
    for k, (old, new) in enumerate(zip(before, after)):
        what = f"parameter {k}" if k < count else f"the state of parameter {k - count}"
        expect(list(old) == list(new), f"after {exercise}, {what} is not the tensor passed in (it was replaced, "
               "or its storage was)", hint=HINT_IN_PLACE)
    for i, (is_leaf, requires_grad, has_history) in enumerate(result["params_autograd"]):
        expect(is_leaf and requires_grad and not has_history, f"after {exercise}, parameter {i} records autograd "
               "history (it has a grad_fn or no longer requires grad)", hint=HINT_HISTORY)
    for i, flags in enumerate(result["states_autograd"]):
        expect(not any(flags), f"after {exercise}, the state of parameter {i} records autograd history",
               hint=HINT_HISTORY)
    for t, (step, grads) in enumerate(zip(steps, result["grads"]), start=1):
        for i, (g, actual) in enumerate(zip(step, grads)):
            if actual is None:
                fail(f"{exercise} cleared the gradient of parameter {i} (p.grad is None after step {t})", hint=HINT_GRADS)
            expect_like(actual, shape=g.shape, dtype=g.dtype, device=device, quantity=f"p.grad of parameter {i} after step {t}",
                        hint=HINT_GRADS)
            if actual.device.type != "meta":
                expect(torch.equal(actual.cpu(), g), f"{exercise} changed or zeroed the gradient of parameter {i} "
                       f"(p.grad after step {t})", hint=HINT_GRADS)
    for i, (p0, p1) in enumerate(zip(params, result["params"][0])):
        p1 = expect_like(p1, shape=p0.shape, dtype=p0.dtype, device=device, quantity=f"parameter {i} after step 1")
        expect(not torch.equal(p1.cpu(), p0), f"parameter {i} is unchanged after step 1", hint=hint_update)


def expect_device(result: Mapping[str, Any], optimizer: Optimizer, params, steps, lr, options, mistakes, where: str,
                  dtype: torch.dtype, *, exercise, hint: str, states: bool = True) -> None:
    """Parameters and states keep the input's dtype and device; on a real device the values too."""
    for t, step in enumerate(result["params"], start=1):
        for i, p in enumerate(step):
            expect_like(p, shape=params[i].shape, dtype=dtype, device=where,
                        quantity=f"{dtype_text(dtype)} parameter {i} on {where} after step {t}")
    for i, state in enumerate(result["states"]):
        expect_like(state[0] if isinstance(state, list) and state else state, shape=params[i].shape, dtype=dtype,
                    device=where, quantity=f"{dtype_text(dtype)} {optimizer.state} of parameter {i} on {where}")
    if where != "meta":
        expect_trajectory(result, optimizer, params, steps, lr, options, mistakes, where, exercise=exercise,
                          hint=hint, dtype=dtype, states=states)


@dataclass(frozen=True)
class Checks:
    """The run-and-compare steps of a suite whose tests differ only in their gradients and options
    (``adagrad_step``, ``rmsprop_step``): parameters of ``shapes``, a learning rate from
    ``lr_range``, and the suite's named mistakes (``mistakes(params, steps, lr, options)``)."""

    optimizer: Optimizer
    shapes: tuple[tuple[int, ...], ...]
    lr_range: tuple[float, float]
    mistakes: Callable[..., dict[str, Any]]
    hint_update: str

    def params(self, rng: torch.Generator) -> list[torch.Tensor]:
        return [normal(rng, *shape) for shape in self.shapes]

    def run_and_check(self, student, rng: torch.Generator, device: str, exercise, count: int, hint: str, *,
                      options: Mapping[str, Any] | None = None, scale: float = 1.0, zero_fraction: float = 0.0,
                      states: bool = True, in_place: bool = False) -> None:
        options = options or {}
        params = self.params(rng)
        steps = gradients(rng, params, count, scale=scale, zero_fraction=zero_fraction)
        lr = number(rng, *self.lr_range)
        result = run(student, self.optimizer.exercise, params, steps, lr, options, device)
        if in_place:
            expect_in_place_without_history(result, self.optimizer.exercise, params, steps, device,
                                            hint_update=self.hint_update)
        expect_trajectory(result, self.optimizer, params, steps, lr, options, self.mistakes(params, steps, lr, options),
                          device, exercise=exercise, hint=hint, states=states)

    def check_device(self, student, rng: torch.Generator, device: str, propagation_devices, exercise) -> None:
        for where in state_devices(device, propagation_devices) + (["meta"] if "meta" in propagation_devices else []):
            for dtype in (FLOAT32, FLOAT64):
                params = [p.to(dtype) for p in self.params(rng)]
                steps = [[g.to(dtype) for g in s] for s in gradients(rng, params, 2)]
                lr = number(rng, *self.lr_range)
                result = run(student, self.optimizer.exercise, params, steps, lr, {}, where, dtype)
                if result is None:
                    continue
                expect_device(result, self.optimizer, params, steps, lr, {}, self.mistakes(params, steps, lr, {}),
                              where, dtype, exercise=exercise, hint=self.hint_update)
