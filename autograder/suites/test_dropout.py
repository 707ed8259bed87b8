"""Hidden tests of ``dropout(X, drop_prob)`` (docs/exercises.md §4): inverted dropout in training mode.

Dropout is random, so it is tested statistically, never by matching a seed. Inputs have no zeros,
so an output element is 0 exactly when it was dropped. Each statistical test bounds the chance
that a correct implementation fails it by ``FAILURE_PROBABILITY`` (two-sided Hoeffding bounds,
split evenly over the test's checks by a union bound).
"""

from __future__ import annotations

import torch

from autograder.course.hints import DROPOUT_EDGE_ONE as HINT_EDGE_ONE, DROPOUT_EDGE_ZERO as HINT_EDGE_ZERO
from autograder.errors import OutcomeKind
from autograder.sandbox.session import StudentError
from autograder.grading.compare import (expect, expect_close, expect_equal, expect_gradient, expect_like, fail,
                                        has_nonfinite)
from autograder.suites._common import (FLOAT32, FLOAT64, away_from_zero, dtype_text, hoeffding_epsilon, normal,
                                       shape_text, value_and_propagation_devices, vjp_on)

EXERCISE = "dropout"

#: Chance that a correct dropout fails one statistical test.
FAILURE_PROBABILITY = 1e-6
#: Shape of the drop-rate sample: 2^16 independent draws.
RATE_SHAPE = (256, 256)
#: Drop probabilities of the drop-rate test: asymmetric, so dropping with 1 - p instead shows.
RATE_PROBS = (0.2, 0.7)
#: Shape and drop probability of the rescaling, gradient and fresh-mask tests.
SHAPE = (64, 48)
RESCALE_PROB = 0.3
GRADIENT_PROB = 0.4
FRESH_PROB = 0.5
#: Odd shapes of the edge test, with the probability used there.
ODD_SHAPES = ((1,), (1, 1), (2, 3, 4), (64, 1))
ODD_PROB = 0.5
#: drop_prob values outside [0, 1].
INVALID_PROBS = (-0.1, 1.5)
#: What the contract accepts as "raises" for an invalid drop_prob.
ACCEPTED_ERRORS = ("ValueError", "AssertionError")

HINT_RATE = ("drop each element independently with probability drop_prob: e.g. keep = torch.rand_like(X) > drop_prob "
             "(one random number per element, from torch's generator on X's device)")
HINT_RESCALE = "inverted dropout divides the kept elements by 1 - drop_prob, so that the expected output equals X"
HINT_GRADIENT = ("compute the output as X * mask / (1 - drop_prob) (or torch.where(keep, X / (1 - drop_prob), 0)) with "
                 "differentiable operations, so that the gradient is masked and scaled like the output")
HINT_FRESH = ("draw a new mask at every call: no torch.manual_seed inside the function and no mask kept between calls")
HINT_INVALID = ("check drop_prob first: if not 0 <= drop_prob <= 1, raise ValueError (or use assert 0 <= drop_prob <= 1)")


def _dropped(output: torch.Tensor) -> torch.Tensor:
    """Where the output is exactly zero, i.e. dropped (inputs have no zeros), on the CPU."""
    return output.detach().cpu() == 0


def _rate_check(observed: float, expected: float, eps: float, what: str, hint: str) -> None:
    expect(abs(observed - expected) <= eps,
           f"{what}: {observed:.4f}, but a correct dropout gives {expected:.4f} ± {eps:.4f} (a two-sided Hoeffding "
           f"bound: a correct implementation fails this check with probability below {FAILURE_PROBABILITY:g})",
           hint=hint)


def test_drop_rate(student, rng, device, exercise):
    # per drop_prob: the overall rate, and independence of neighbours along both dimensions
    checks = 3 * len(RATE_PROBS)
    eps_all = hoeffding_epsilon(RATE_SHAPE[0] * RATE_SHAPE[1], FAILURE_PROBABILITY / checks)
    eps_pairs = hoeffding_epsilon(RATE_SHAPE[0] * RATE_SHAPE[1] // 2, FAILURE_PROBABILITY / checks)
    for p in RATE_PROBS:
        X = away_from_zero(rng, *RATE_SHAPE)
        result = student.vjp(EXERCISE, {"X": X, "drop_prob": p}, device=device)
        output = expect_like(result.output, shape=RATE_SHAPE, dtype=FLOAT64, device=device,
                             quantity=f"output for drop_prob={p}")
        dropped = _dropped(output)
        rate = float(dropped.double().mean())
        hint = HINT_RATE
        if abs(rate - (1 - p)) <= eps_all:
            hint = ("you drop with probability 1 - drop_prob: an element must be zeroed with probability drop_prob "
                    "(keep = torch.rand_like(X) > drop_prob)")
        _rate_check(rate, p, eps_all, f"fraction of elements set to 0 with drop_prob={p} "
                    f"({dropped.numel()} elements)", hint)
        for dim, pairs in ((1, dropped[:, 0::2] & dropped[:, 1::2]), (0, dropped[0::2, :] & dropped[1::2, :])):
            _rate_check(float(pairs.double().mean()), p * p, eps_pairs,
                        f"fraction of neighbouring pairs along dimension {dim} that are both dropped, with drop_prob={p}",
                        "elements are not dropped independently: draw one random number per element "
                        "(torch.rand_like(X) or torch.rand(X.shape, device=X.device)), not one per row or column")


def _require_dropping(dropped: torch.Tensor, p: float, quantity: str) -> None:
    """A test that reads the mask off the output's zeros must first see dropout happen: an output
    with no zeros (or only zeros) is not a dropout, whatever else it gets right (e.g. X / (1 - p)).
    How many are dropped, and whether independently, is test_drop_rate's alone (one slip, one test:
    a mask drawn per row or with 1 - p keeps the points of the tests that read the mask)."""
    count = int(dropped.sum())
    expect(0 < count < dropped.numel(), f"{quantity}: {count} of {dropped.numel()} elements set to 0 with "
           f"drop_prob={p}: a dropout drops some elements and keeps the others", hint=HINT_RATE)


def _expected_survivors(X: torch.Tensor, dropped: torch.Tensor, p: float) -> torch.Tensor:
    return torch.where(dropped, 0.0, X / (1 - p))


def test_rescaling(student, rng, device, exercise):
    for dtype in (FLOAT64, FLOAT32):
        X = away_from_zero(rng, *SHAPE).to(dtype)
        p = RESCALE_PROB
        result = student.vjp(EXERCISE, {"X": X, "drop_prob": p}, device=device)
        quantity = f"output for {dtype_text(dtype)} X with drop_prob={p}"
        output = expect_like(result.output, shape=SHAPE, dtype=dtype, device=device, quantity=quantity)
        dropped = _dropped(output)
        expect(not bool(dropped.all()), f"{quantity}: every element is 0 with drop_prob={p}", hint=HINT_RATE)
        _require_dropping(dropped, p, quantity)
        X64 = X.to(FLOAT64)
        mistakes = {
            "the kept elements not rescaled (X * mask): " + HINT_RESCALE: lambda: torch.where(dropped, 0.0, X64),
            "the kept elements multiplied by 1 - drop_prob instead of divided by it":
                lambda: torch.where(dropped, 0.0, X64 * (1 - p)),
            "the kept elements divided by drop_prob instead of by 1 - drop_prob":
                lambda: torch.where(dropped, 0.0, X64 / p),
        }
        expected = _expected_survivors(X64, dropped, p).to(device, dtype)
        expect_close(output, expected, quantity=f"{quantity}, kept elements", exercise=exercise, hint=HINT_RESCALE,
                     mistakes=mistakes)


def test_gradient_mask(student, rng, device, exercise):
    p = GRADIENT_PROB
    X = away_from_zero(rng, *SHAPE)
    upstream = away_from_zero(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"X": X, "drop_prob": p}, grad_wrt=["X"], upstream=upstream, device=device,
                         repeat=2)
    for index, call in enumerate(result.calls, start=1):
        output = expect_like(call.output, shape=SHAPE, dtype=FLOAT64, device=device,
                             quantity=f"output of call {index} with drop_prob={p}")
        dropped = _dropped(output)
        _require_dropping(dropped, p, f"output of call {index} with drop_prob={p}")
        grad = call.grads.get("X")
        if type(grad) is torch.Tensor and tuple(grad.shape) == SHAPE and grad.device.type != "meta":
            differ = int(((grad.detach().cpu() == 0) != dropped).sum())
            expect(differ == 0, f"gradient of X in call {index}: its zeros differ from the output's at {differ} / "
                   f"{dropped.numel()} positions: the gradient must be masked by the same draw as the output",
                   hint=HINT_GRADIENT)
        expected = _expected_survivors(upstream, dropped, p)
        expect_gradient(call, "X", expected.to(device), exercise=exercise, case=f" in call {index}",
                        hint=HINT_GRADIENT, mistakes={
                            "the gradient masked but not scaled by 1 / (1 - drop_prob): " + HINT_GRADIENT:
                                lambda: torch.where(dropped, 0.0, upstream)})


def test_fresh_masks(student, rng, device, exercise):
    p = FRESH_PROB
    X = away_from_zero(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"X": X, "drop_prob": p}, device=device, repeat=2)
    masks = [
        _dropped(expect_like(call.output, shape=SHAPE, dtype=FLOAT64, device=device,
                             quantity=f"output of call {index} with drop_prob={p}"))
        for index, call in enumerate(result.calls, start=1)
    ]
    agree = float((masks[0] == masks[1]).double().mean())
    expect(agree < 1.0, f"two calls with the same X and drop_prob={p} dropped exactly the same elements",
           hint=HINT_FRESH)
    # Independence between elements is test_drop_rate's: this bound counts rows, not elements, as
    # the independent units, so a mask drawn once per row (dependent within a row, which the
    # drop-rate test names) passes here whatever the seed: one slip, one test.
    eps = hoeffding_epsilon(masks[0].shape[0], FAILURE_PROBABILITY)
    _rate_check(agree, p * p + (1 - p) * (1 - p), eps,
                f"fraction of elements on which the masks of two calls (same X, drop_prob={p}) agree", HINT_FRESH)


def test_edge_probabilities(student, rng, device, exercise):
    X = away_from_zero(rng, *SHAPE)
    result = student.vjp(EXERCISE, {"X": X, "drop_prob": 0.0}, device=device)
    expect_close(result.output, X.to(device), quantity="output for drop_prob=0", exercise=exercise,
                 hint=HINT_EDGE_ZERO)
    for dtype in (FLOAT64, FLOAT32):
        X = away_from_zero(rng, *SHAPE).to(dtype)
        result = student.vjp(EXERCISE, {"X": X, "drop_prob": 1.0}, device=device)
        expect_close(result.output, torch.zeros_like(X).to(device), quantity=f"output for {dtype_text(dtype)} X "
                     "with drop_prob=1", exercise=exercise, hint=HINT_EDGE_ONE if has_nonfinite(result.output) else
                     "with drop_prob = 1 every element is dropped: the output is all zeros")
    seen_dropped = 0
    for shape in ODD_SHAPES:
        X = away_from_zero(rng, *shape)
        result = student.vjp(EXERCISE, {"X": X, "drop_prob": ODD_PROB}, device=device)
        quantity = f"output for X of shape {shape_text(shape)} with drop_prob={ODD_PROB}"
        output = expect_like(result.output, shape=shape, dtype=FLOAT64, device=device, quantity=quantity,
                             hint="the output has X's shape")
        expected = _expected_survivors(X, _dropped(output), ODD_PROB)
        seen_dropped += int(_dropped(output).sum())
        expect_close(output, expected.to(device), quantity=quantity, exercise=exercise,
                     hint="every element is either 0 or X / (1 - drop_prob)")
    # a correct dropout keeps all of these 90 elements with probability 2^-90; one that draws one
    # number per row (test_drop_rate's mistake) all of its 72 rows with probability 2^-72
    expect(seen_dropped > 0, f"no element was dropped in any of the odd shapes with drop_prob={ODD_PROB}",
           hint=HINT_RATE)


HINT_NO_MUTATION = ("leave X as it is: build the output as a new tensor (X * mask / (1 - drop_prob), "
                    "torch.zeros_like(X)); X.zero_(), X.mul_(...) or X[...] = ... change the caller's tensor")
#: drop_prob values of the no-mutation test: the edge cases are where in-place shortcuts hide.
MUTATION_PROBS = (0.5, 1.0, 0.0)
#: The drop_prob at which the no-mutation test sees the exercise attempted (some dropped, some kept).
ATTEMPT_PROB = 0.5


def test_no_mutation(student, rng, device, exercise):
    """Owns: X is left exactly as it was, for every drop_prob (values, shape, requires_grad). Needs a
    returned tensor of X's shape that drops some elements and keeps others at drop_prob=0.5 (the
    exercise attempted), not correct values or rates (those are the other tests')."""
    for p in MUTATION_PROBS:
        X = away_from_zero(rng, *SHAPE)
        result = student.vjp(EXERCISE, {"X": X, "drop_prob": p}, device=device)
        output = expect_like(result.output, shape=SHAPE, dtype=FLOAT64, device=device,
                             quantity=f"output for drop_prob={p}", hint="the output has X's shape, dtype and device")
        if p == ATTEMPT_PROB:
            dropped = int(_dropped(output).sum())
            expect(0 < dropped < output.numel(),
                   f"dropout(X, drop_prob={p}) dropped {dropped} of {output.numel()} elements: it does not drop at "
                   "random yet, and leaving X unchanged earns points only for a dropout that does",
                   hint="implement the exercise first: test_drop_rate and test_rescaling say what is wrong")
        expect_equal(result.inputs_after["X"], X.to(device), quantity=f"X after the call with drop_prob={p}",
                     hint=HINT_NO_MUTATION)


def test_invalid_p(student, rng, device, exercise):
    X = normal(rng, *SHAPE)
    for p in INVALID_PROBS:
        try:
            student.vjp(EXERCISE, {"X": X, "drop_prob": p}, device=device)
        except StudentError as error:
            if error.kind != OutcomeKind.EXCEPTION:
                raise
            expect(any(name in error.message for name in ACCEPTED_ERRORS),
                   f"dropout(X, drop_prob={p}) raised {error.message.split(':')[0]}, expected ValueError or "
                   "AssertionError", hint=HINT_INVALID)
        else:
            fail(f"dropout(X, drop_prob={p}) returned normally; a drop_prob outside [0, 1] must raise ValueError "
                 "or AssertionError", hint=HINT_INVALID)


def test_device(student, rng, device, propagation_devices, exercise):
    p = FRESH_PROB
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            X = away_from_zero(rng, *SHAPE).to(dtype)
            result = vjp_on(student, EXERCISE, {"X": X, "drop_prob": p}, where)
            if result is None:
                continue
            quantity = f"output for {dtype_text(dtype)} X on {where} with drop_prob={p}"
            output = expect_like(result.output, shape=SHAPE, dtype=dtype, device=where, quantity=quantity)
            if where != "meta":
                _require_dropping(_dropped(output), p, quantity)
                expected = _expected_survivors(X.to(FLOAT64), _dropped(output), p).to(where, dtype)
                expect_close(output, expected, quantity=quantity, exercise=exercise,
                             hint="every element is either 0 or X / (1 - drop_prob)")
