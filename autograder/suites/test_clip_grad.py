"""Hidden tests of ``clip_grad(params, theta)`` (docs/exercises.md §5): clipping by the global L2 norm
of all gradients, in place, returning the norm before clipping.

Runs through its calling convention, ``GradsInPlace`` (``autograder/course/conventions.py``): before each step every
``p.grad`` is set to a fresh copy of that step's gradient, then ``clip_grad(params, theta)`` is
called. The expected gradients follow the contract, ``g * theta / ||g||`` when ``||g|| > theta``,
with the norm from ``torch.nn.utils.get_total_norm``.

A guard in the denominator, ``theta / (||g|| + 1e-6)`` (what ``torch.nn.utils.clip_grad_norm_`` and
most real code do), is accepted: it divides by the norm up to a relative 1e-6 / ||g||, which is
below float32's tolerance but above float64's, so without this a float64 test would pass or fail
with the drawn norm (seed-dependent). Clipped gradients are therefore compared with the contract's
values or, failing that, with the guarded form's (``GUARD``); nothing else is accepted.

Which test owns which property (one mistake loses the tests that name it):

- ``test_clips_large``: the clipped values when ``||g|| > theta`` (global norm, factor theta / ||g||);
- ``test_leaves_small``: gradients left exactly as they are when ``||g|| <= theta``;
- ``test_returns_norm``: the returned norm (before clipping);
- ``test_skips_none``: ``.grad is None`` skipped (left None, out of the norm);
- ``test_in_place``: ``p.grad`` modified in place (same tensor objects), parameters untouched;
- ``test_generator``: ``params`` given as a generator (iterable once), as ``model.parameters()``;
- ``test_trajectory``: many steps across scales (tiny, near theta, huge);
- ``test_device``: dtype and device of every ``p.grad`` kept (values are owned by the tests above).
"""

from __future__ import annotations

import torch

from autograder.course.hints import (CLIP_GRAD_CLIP as HINT_CLIP, CLIP_GRAD_PER_TENSOR as HINT_PER_TENSOR,
                                     CLIP_GRAD_SMALL as HINT_SMALL)
from autograder.grading.compare import (expect, expect_close, expect_equal, expect_like, expect_scalar_close, matches,
                                tolerance_for)
from autograder.suites._common import FLOAT32, FLOAT64, dtype_text, normal, number, run_on, state_devices

EXERCISE = "clip_grad"

#: Parameter shapes: a matrix, a vector, a 3-D tensor, a single element.
SHAPES = ((3, 4), (5,), (2, 3, 2), (1,))
#: Scale of the random gradients.
GRAD_SCALE = 3.0
#: theta relative to the gradients' norm when clipping must happen, and when it must not.
CLIP_RATIO = (0.2, 0.7)
NO_CLIP_RATIO = (1.3, 3.0)
#: Gradient scales of the trajectory's steps relative to theta: far below, just below, just above,
#: far above, tiny, huge.
TRAJECTORY_SCALES = (0.05, 0.9, 1.1, 20.0, 1e-9, 1e6)

HINT_NORM = "return the global norm computed before clipping (a Python float or a 0-d tensor)"
HINT_IN_PLACE = ("modify each p.grad in place (p.grad.mul_(factor) or p.grad[:] *= factor); p.grad = p.grad * factor "
                 "binds a new tensor and code holding the old gradient never sees the clipped values")
HINT_NONE = "skip parameters whose .grad is None: leave them None and leave them out of the norm"
HINT_GENERATOR = ("params may be a generator such as model.parameters(), which can be iterated only once: "
                  "make a list first (params = [p for p in params if p.grad is not None]) and use it for both "
                  "the norm and the clipping")


def _params(rng: torch.Generator, shapes=SHAPES) -> list[torch.Tensor]:
    return [normal(rng, *shape) for shape in shapes]


def _global_norm(grads: list[torch.Tensor | None]) -> float:
    present = [g.to(FLOAT64) for g in grads if g is not None]
    return float(torch.nn.utils.get_total_norm(present, norm_type=2.0))


#: The largest guard accepted in the clipping factor's denominator, theta / (||g|| + GUARD).
GUARD = 1e-6


def _clipped(grads: list[torch.Tensor | None], theta: float, guard: float = 0.0) -> list[torch.Tensor | None]:
    """The contract: g * theta / ||g|| when ||g|| > theta, else g unchanged (in float64)."""
    norm = _global_norm(grads)
    if norm <= theta:
        return [None if g is None else g.clone() for g in grads]
    return [None if g is None else g.to(FLOAT64) * (theta / (norm + guard)) for g in grads]


def _step_mistakes(grads: list[torch.Tensor | None], theta: float,
                   unchanged: str = "") -> dict[str, list[torch.Tensor | None]]:
    """What typical wrong clippings make of one step's gradients (float64), by mistake."""
    present = [g.to(FLOAT64) if g is not None else None for g in grads]
    norm = _global_norm(grads)

    def each(fn):
        return [None if g is None else fn(g) for g in present]

    if norm <= theta:
        return {"the gradients scaled by theta / ||g|| although ||g|| <= theta: " + HINT_SMALL:
                each(lambda g: g * (theta / norm))}
    unchanged = unchanged or "the gradients left unchanged: " + HINT_IN_PLACE
    if all(float(g.norm()) <= theta for g in present if g is not None):
        # Clipping each gradient by its own norm changes nothing here: both causes are named.
        per_tensor = {unchanged + "; or each gradient was clipped by its own norm (per-tensor clipping), "
                      "which is below theta for every one of them here: " + HINT_PER_TENSOR: each(lambda g: g)}
    else:
        per_tensor = {
            "each gradient clipped by its own norm instead of the global norm of all gradients together "
            "(per-tensor clipping): " + HINT_PER_TENSOR:
                each(lambda g: g * (theta / float(g.norm())) if float(g.norm()) > theta else g),
            unchanged: each(lambda g: g),
        }
    return {
        **per_tensor,
        "the gradients scaled by ||g|| / theta (the ratio inverted)": each(lambda g: g * (norm / theta)),
        "the gradients scaled by theta / ||g||^2 (the squared norm, the square root is missing)":
            each(lambda g: g * (theta / norm**2)),
    }


def _run(student, params, steps, theta, device, dtype=FLOAT64, generator=False):
    args = {"params": [p.to(dtype) for p in params],
            "steps": [[None if g is None else g.to(dtype) for g in step] for step in steps], "theta": theta,
            "generator": generator}
    return run_on(student, EXERCISE, args, device)


def _expect_step(result, steps, theta, step, device, exercise, hint, dtype=FLOAT64, unchanged=""):
    grads = steps[step]
    expected = _clipped(grads, theta)
    after = result["grads"][step]
    tol = tolerance_for(dtype, exercise)
    # a mistake is named only when it explains every gradient of the step
    mistakes = {description: candidates for description, candidates in _step_mistakes(grads, theta, unchanged).items()
                if all(want is None or matches(got, candidate, tol)
                       for got, candidate, want in zip(after, candidates, expected))}
    for index, want in enumerate(expected):
        quantity = f"p.grad of parameter {index} after step {step + 1}"
        if want is None:
            expect(after[index] is None, f"{quantity}: expected None (the parameter had no gradient), got a value",
                   hint=HINT_NONE)
            continue
        expect(after[index] is not None, f"{quantity}: None after the call; the (clipped) gradient must stay in p.grad",
               hint=hint)
        named = {description: candidates[index] for description, candidates in mistakes.items()}
        if _global_norm(grads) <= theta:
            expect_equal(after[index], want.to(device, dtype), quantity=quantity, hint=hint, mistakes=named)
        elif not matches(after[index], _clipped(grads, theta, GUARD)[index].to(device, dtype), tol):
            expect_close(after[index], want.to(device, dtype), quantity=quantity, exercise=exercise, hint=hint,
                         mistakes=named)


def _expect_norm(result, steps, theta, step, exercise, dtype=FLOAT64, where="cpu"):
    grads = steps[step]
    norm = _global_norm(grads)
    expect_scalar_close(result["returned"][step], norm, quantity=f"returned value of step {step + 1}",
                        exercise=exercise, dtype=dtype, hint=HINT_NORM, on_meta=where == "meta", mistakes={
                            "the norm after clipping (theta): return the norm computed before clipping":
                                min(theta, norm),
                            "the squared norm (the square root is missing)": norm**2,
                            "the clipping factor theta / ||g|| instead of the norm": theta / norm,
                        })


def _scaled_grads(rng: torch.Generator, params: list[torch.Tensor], target_norm: float) -> list[torch.Tensor]:
    grads = [normal(rng, *p.shape) for p in params]
    norm = _global_norm(grads)
    return [g * (target_norm / norm) for g in grads]


def test_clips_large(student, rng, device, exercise):
    params = _params(rng)
    steps = [[normal(rng, *p.shape, scale=GRAD_SCALE) for p in params]]
    theta = _global_norm(steps[0]) * number(rng, *CLIP_RATIO)
    result = _run(student, params, steps, theta, device)
    _expect_step(result, steps, theta, 0, device, exercise, HINT_CLIP)


def test_leaves_small(student, rng, device, exercise):
    params = _params(rng)
    steps = [[normal(rng, *p.shape, scale=GRAD_SCALE) for p in params]]
    theta = _global_norm(steps[0]) * number(rng, *NO_CLIP_RATIO)
    # leaving small gradients alone is only worth points from a clip_grad that clips large ones
    steps.append(_scaled_grads(rng, params, theta / number(rng, *CLIP_RATIO)))
    result = _run(student, params, steps, theta, device)
    _expect_step(result, steps, theta, 0, device, exercise, HINT_SMALL)
    _expect_step(result, steps, theta, 1, device, exercise, HINT_CLIP)


def test_returns_norm(student, rng, device, exercise):
    params = _params(rng)
    theta = number(rng, 0.5, 2.0)
    steps = [_scaled_grads(rng, params, theta / number(rng, *CLIP_RATIO)),
             _scaled_grads(rng, params, theta / number(rng, *NO_CLIP_RATIO))]
    result = _run(student, params, steps, theta, device)
    for step in range(len(steps)):
        _expect_norm(result, steps, theta, step, exercise)
    _expect_step(result, steps, theta, 0, device, exercise, HINT_CLIP)  # the norm of a clip_grad that clips


def test_skips_none(student, rng, device, exercise):
    params = _params(rng)
    theta = number(rng, 0.5, 2.0)
    steps = []
    for ratio in (CLIP_RATIO, NO_CLIP_RATIO):
        grads = _scaled_grads(rng, params, theta / number(rng, *ratio))
        steps.append([g if i % 2 == 0 else None for i, g in enumerate(grads)])
    result = _run(student, params, steps, theta, device)
    for step in range(len(steps)):
        _expect_step(result, steps, theta, step, device, exercise, HINT_NONE)
        _expect_norm(result, steps, theta, step, exercise)


def test_in_place(student, rng, device, exercise):
    params = _params(rng)
    theta = number(rng, 0.5, 2.0)
    steps = [_scaled_grads(rng, params, theta / number(rng, *CLIP_RATIO)),
             _scaled_grads(rng, params, theta / number(rng, *NO_CLIP_RATIO))]
    result = _run(student, params, steps, theta, device)
    for step, same in enumerate(result["same_grad_objects"]):
        expect(same is True, f"after step {step + 1} ({'clipping' if step == 0 else 'no clipping'}), p.grad is not "
               "the tensor it was before the call", hint=HINT_IN_PLACE)
    for index, (before, after) in enumerate(zip(params, result["params_after"])):
        expect_equal(after, before.to(device), quantity=f"parameter {index} itself after the calls",
                     hint="clip_grad changes the gradients (p.grad), never the parameters")
    _expect_step(result, steps, theta, 0, device, exercise, HINT_IN_PLACE)


def test_generator(student, rng, device, exercise):
    params = _params(rng)
    theta = number(rng, 0.5, 2.0)
    steps = [_scaled_grads(rng, params, theta / number(rng, *CLIP_RATIO)),
             _scaled_grads(rng, params, theta / number(rng, *NO_CLIP_RATIO))]
    result = _run(student, params, steps, theta, device, generator=True)
    for step in range(len(steps)):
        _expect_step(result, steps, theta, step, device, exercise, HINT_GENERATOR,
                     unchanged="the gradients left unchanged with params given as a generator: the first pass "
                               "(the norm) used it up, so the clipping loop saw no parameter; " + HINT_GENERATOR)
        _expect_norm(result, steps, theta, step, exercise)


def test_trajectory(student, rng, device, exercise):
    params = _params(rng)
    theta = number(rng, 0.5, 2.0)
    steps = [_scaled_grads(rng, params, theta * scale) for scale in TRAJECTORY_SCALES]
    result = _run(student, params, steps, theta, device)
    for step, scale in enumerate(TRAJECTORY_SCALES):
        _expect_step(result, steps, theta, step, device, exercise, HINT_SMALL if scale < 1 else HINT_CLIP)
        _expect_norm(result, steps, theta, step, exercise)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in state_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            params = [p.to(dtype) for p in _params(rng)]
            theta = number(rng, 0.5, 2.0)
            steps = [[g.to(dtype) for g in _scaled_grads(rng, params, theta / number(rng, *CLIP_RATIO))],
                     [g.to(dtype) for g in _scaled_grads(rng, params, theta / number(rng, *NO_CLIP_RATIO))]]
            result = _run(student, params, steps, theta, where, dtype)
            if result is None:
                continue
            for step in range(len(steps)):
                for index, g in enumerate(result["grads"][step]):
                    expect_like(g, shape=params[index].shape, dtype=dtype, device=where,
                                quantity=f"p.grad of {dtype_text(dtype)} parameter {index} on {where} after step {step + 1}")
                _expect_step(result, steps, theta, step, where, exercise, HINT_CLIP, dtype)
                _expect_norm(result, steps, theta, step, exercise, dtype, where)
