"""Hidden tests of ``batch_norm(X, gamma, beta, running_mean, running_var, training, momentum=0.1,
eps=1e-5)`` (docs/exercises.md §11): per-channel normalisation of ``X`` (n, c) or (n, c, h, w) with the
batch mean and biased variance in training mode (updating the running statistics in place with the
unbiased variance, without autograd history), with the running statistics in evaluation mode
(leaving them unchanged); returns gamma X_hat + beta, differentiable with respect to X, gamma, beta.

Through the ordinary ``vjp`` harness: the running statistics are plain arguments, and the worker
reports what the caller's tensors hold after the call (``inputs_after``) and what the call did to
them (``input_facts``: in-place writes, autograd history). Expected values come from the reference
run here in float64 on the CPU on copies of the same statistics.
"""

from __future__ import annotations

import torch

from autograder.grading.compare import expect, expect_close, expect_equal, expect_gradient, expect_like, fail
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, normal, shape_text, uniform,
                                       value_and_propagation_devices, vjp_on)
from reference import batch_norm as reference_batch_norm

EXERCISE = "batch_norm"

#: Shapes of X: a fully connected layer's (n, c) and a convolutional layer's (n, c, h, w).
SHAPE_2D = (8, 4)
SHAPE_4D = (4, 3, 5, 6)
#: Channels get different means and scales, so that statistics over the wrong dimensions differ.
MEAN_RANGE, STD_RANGE = (-3.0, 3.0), (0.5, 3.0)
#: A momentum other than the default, for the running-statistics test.
MOMENTUM = 0.3
STATS = ("running_mean", "running_var")
DIFFERENTIABLE = ("X", "gamma", "beta")

HINT_TRAINING = ("in training mode normalise each channel with its batch mean and its biased variance "
                 "(X.var(dim=..., unbiased=False), the mean of (X - mean)**2): Y = gamma (X - mean) / sqrt(var + eps) + beta")
HINT_CHANNELS = ("for X of shape (n, c, h, w) the statistics of channel c are over n, h and w: mean(dim=(0, 2, 3)), "
                 "reshaped to (1, c, 1, 1) to broadcast")
HINT_RUNNING = ("in training mode update the given tensors in place: running_mean.mul_(1 - momentum).add_(momentum * mean) "
                "(or running_mean[:] = ...), with the unbiased variance (divide by m - 1) for running_var")
HINT_EVALUATION = ("in evaluation mode (training=False) normalise with running_mean and running_var, not with the "
                   "batch statistics, and do not change them")
HINT_GRADIENT = ("build Y from X, gamma and beta with differentiable torch operations; the batch mean and variance "
                 "are part of the graph (no .detach(), no torch.no_grad() around them)")
HINT_HISTORY = ("update the running statistics under torch.no_grad() (or from detached batch statistics): otherwise "
                "they record autograd history and every later step backpropagates into earlier batches")
HINT_NO_MUTATION = "compute Y in new tensors; only running_mean and running_var are updated in place, in training mode"


def _inputs(rng, shape, training, *, momentum=None, eps=None) -> dict:
    c = shape[1]
    per_channel = (1, c) + (1,) * (len(shape) - 2)
    X = normal(rng, *shape) * uniform(rng, *STD_RANGE, *per_channel) + uniform(rng, *MEAN_RANGE, *per_channel)
    args = {"X": X, "gamma": uniform(rng, 0.5, 2.0, c), "beta": normal(rng, c),
            "running_mean": normal(rng, c), "running_var": uniform(rng, 0.5, 3.0, c), "training": training}
    if momentum is not None or eps is not None:  # positional: eps needs momentum before it
        args["momentum"] = 0.1 if momentum is None else momentum
    if eps is not None:
        args["eps"] = eps
    return args


def _f64(args) -> dict:
    return {k: (v.detach().cpu().to(FLOAT64).clone() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}


def _variant(args, *, unbiased_normalise=False, biased_running=False, reversed_momentum=False, dims=None,
             batch_in_eval=False, running_in_training=False):
    """batch_norm written out with one thing changeable: what typical mistakes compute.
    Returns (Y, running_mean, running_var) in float64 on the CPU."""
    a = _f64(args)
    X, gamma, beta, rm, rv = a["X"], a["gamma"], a["beta"], a["running_mean"], a["running_var"]
    momentum, eps = a.get("momentum", 0.1), a.get("eps", 1e-5)
    channel_dims = (0,) if X.dim() == 2 else (0, 2, 3)
    dims = channel_dims if dims is None else dims
    shape = (1, -1) + (1,) * (X.dim() - 2)
    use_batch = (a["training"] and not running_in_training) or (not a["training"] and batch_in_eval)
    mean, var = X.mean(dim=dims, keepdim=True), X.var(dim=dims, correction=1 if unbiased_normalise else 0, keepdim=True)
    if a["training"] and dims == channel_dims:
        batch_var = X.var(dim=dims, correction=0 if biased_running else 1)
        w_old, w_new = (momentum, 1 - momentum) if reversed_momentum else (1 - momentum, momentum)
        rm, rv = w_old * rm + w_new * X.mean(dim=dims), w_old * rv + w_new * batch_var
    if not use_batch:
        mean, var = a["running_mean"].reshape(shape), a["running_var"].reshape(shape)
    Y = gamma.reshape(shape) * (X - mean) / torch.sqrt(var + eps) + beta.reshape(shape)
    return Y, rm, rv


def _expected(args):
    """The reference's output and running statistics after the call (float64, CPU)."""
    a = _f64(args)
    with torch.no_grad():
        Y = reference_batch_norm(*a.values())
    return Y, a["running_mean"], a["running_var"]


def _output_mistakes(args) -> dict[str, object]:
    X = args["X"]
    mistakes = {
        "the unbiased variance (divided by m - 1) used to normalise: normalise with the biased variance "
        "(divided by m), and keep the unbiased one for running_var": lambda: _variant(args, unbiased_normalise=True)[0],
        "the running statistics used in training mode: " + HINT_TRAINING: lambda: _variant(args, running_in_training=True)[0],
        "the batch statistics used in evaluation mode: " + HINT_EVALUATION: lambda: _variant(args, batch_in_eval=True)[0],
        "gamma and beta swapped: Y = gamma * X_hat + beta": lambda: _variant({**args, "gamma": args["beta"], "beta": args["gamma"]})[0],
    }
    if X.dim() == 4:
        mistakes["statistics over the batch dimension only (per position): " + HINT_CHANNELS] = (
            lambda: _variant(args, dims=(0,))[0])
        mistakes["statistics over every dimension at once, not per channel: " + HINT_CHANNELS] = (
            lambda: _variant(args, dims=(0, 1, 2, 3))[0])
        mistakes["statistics per example and channel (over h and w, i.e. instance norm): " + HINT_CHANNELS] = (
            lambda: _variant(args, dims=(2, 3))[0])
    else:
        mistakes["statistics over the features of each example (dim=1, i.e. layer norm) instead of over the batch: "
                 "the statistics of channel c are over the n examples, dim=0"] = lambda: _variant(args, dims=(1,))[0]
    return mistakes


def _stat_mistakes(args, index) -> dict[str, object]:
    initial = _f64(args)[STATS[index]]
    mistakes = {
        "the tensors passed in unchanged: the running statistics were rebound (running_mean = ...) instead of "
        "updated in place: " + HINT_RUNNING: initial,
        "the momentum convention reversed: running = (1 - momentum) * running + momentum * batch statistic "
        "(momentum weighs the new batch, as in torch)": lambda: _variant(args, reversed_momentum=True)[1 + index],
    }
    if index == 1:
        mistakes["running_var updated with the biased variance: the running variance uses the unbiased one "
                 "(times m / (m - 1))"] = lambda: _variant(args, biased_running=True)[2]
    return mistakes


def _describe(args) -> str:
    mode = "training" if args["training"] else "evaluation"
    options = "".join(f", {k}={args[k]}" for k in ("momentum", "eps") if k in args)
    return f"X of shape {shape_text(args['X'].shape)} in {mode} mode{options}"


def _call(student, args, device, *, grads=False, rng=None, layouts=None):
    upstream = normal(rng, *args["X"].shape) if grads else None
    result = student.vjp(EXERCISE, args, grad_wrt=list(DIFFERENTIABLE) if grads else [], upstream=upstream,
                         device=device, layouts=layouts)
    return result, upstream


def _expect_output(result, args, where, dtype, exercise, hint, case=""):
    Y, _, _ = _expected(args)
    return expect_close(result.output, Y.to(where, dtype), quantity=f"output for {_describe(args)}{case}",
                        exercise=exercise, hint=hint, mistakes=_output_mistakes(args))


def _expect_statistics(result, args, where, dtype, exercise):
    _, rm, rv = _expected(args)
    for index, (name, want) in enumerate(zip(STATS, (rm, rv))):
        actual = result.inputs_after.get(name)
        if args["training"]:
            expect_close(actual, want.to(where, dtype), quantity=f"{name} after a call in training mode ({_describe(args)})",
                         exercise=exercise, hint=HINT_RUNNING, mistakes=_stat_mistakes(args, index))
        else:
            expect_equal(actual, args[name].to(where, dtype), quantity=f"{name} after a call in evaluation mode",
                         hint=HINT_EVALUATION)


def test_training_values(student, rng, device, exercise):
    args = _inputs(rng, SHAPE_2D, True)
    result, _ = _call(student, args, device)
    _expect_output(result, args, device, FLOAT64, exercise, HINT_TRAINING)


def test_channel_statistics(student, rng, device, exercise):
    args = _inputs(rng, SHAPE_4D, True)
    result, _ = _call(student, args, device)
    _expect_output(result, args, device, FLOAT64, exercise, HINT_CHANNELS)
    args = _inputs(rng, SHAPE_4D, True)
    result, _ = _call(student, args, device, layouts={"X": "transposed"})
    _expect_output(result, args, device, FLOAT64, exercise, "inputs may be views with unusual strides: use .reshape "
                   "rather than .view", case=" (non-contiguous X)")


def test_running_statistics(student, rng, device, exercise):
    for shape in (SHAPE_2D, SHAPE_4D):
        args = _inputs(rng, shape, True, momentum=MOMENTUM)
        result, _ = _call(student, args, device)
        _expect_output(result, args, device, FLOAT64, exercise, HINT_TRAINING)
        _expect_statistics(result, args, device, FLOAT64, exercise)


def test_evaluation(student, rng, device, exercise):
    for shape in (SHAPE_2D, SHAPE_4D):
        args = _inputs(rng, shape, False, momentum=MOMENTUM, eps=0.1)
        result, _ = _call(student, args, device)
        _expect_output(result, args, device, FLOAT64, exercise, HINT_EVALUATION)
        _expect_statistics(result, args, device, FLOAT64, exercise)


def _reference_grads(args, upstream):
    a = _f64(args)
    leaves = {n: a[n].requires_grad_() for n in DIFFERENTIABLE}
    Y = reference_batch_norm(*a.values())
    grads = torch.autograd.grad(Y, [leaves[n] for n in DIFFERENTIABLE], upstream.to(FLOAT64))
    return dict(zip(DIFFERENTIABLE, grads))


def _detached_statistics_grad_X(args, upstream):
    """The gradient of X when the batch mean and variance are detached: gamma / sqrt(var + eps) * G."""
    a = _f64(args)
    dims = (0,) if a["X"].dim() == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (a["X"].dim() - 2)
    var = a["X"].var(dim=dims, correction=0).reshape(shape)
    return a["gamma"].reshape(shape) / torch.sqrt(var + a.get("eps", 1e-5)) * upstream.to(FLOAT64)


def test_gradients(student, rng, device, exercise):
    for shape, training in ((SHAPE_4D, True), (SHAPE_2D, True), (SHAPE_2D, False)):
        args = _inputs(rng, shape, training)
        result, upstream = _call(student, args, device, grads=True, rng=rng)
        _expect_output(result, args, device, FLOAT64, exercise, HINT_TRAINING if training else HINT_EVALUATION)
        expected = _reference_grads(args, upstream)
        case = f" ({_describe(args)})"
        for name in DIFFERENTIABLE:
            mistakes = {}
            if name == "X" and training:
                mistakes["the gradient with the batch mean and variance treated as constants (detached): "
                         + HINT_GRADIENT] = lambda: _detached_statistics_grad_X(args, upstream)
            expect_gradient(result.calls[0], name, expected[name].to(device), exercise=exercise, hint=HINT_GRADIENT,
                            mistakes=mistakes, case=case)


def test_no_history(student, rng, device, exercise):
    for shape in (SHAPE_2D, SHAPE_4D):
        args = _inputs(rng, shape, True)
        result, _ = _call(student, args, device, grads=True, rng=rng)
        _expect_statistics(result, args, device, FLOAT64, exercise)  # the defining behaviour first
        for name in STATS:
            facts = result.input_facts.get(name)
            if not isinstance(facts, dict):
                fail(f"{name}: the grader could not observe it after the call")
            expect(facts.get("grad_fn") is None and facts.get("requires_grad") is False,
                   f"after a call in training mode {name} records autograd history (it hangs from "
                   f"{facts.get('grad_fn') or 'the graph'} and requires grad)", hint=HINT_HISTORY)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            for shape, training in ((SHAPE_4D, True), (SHAPE_2D, False)):
                args = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v)
                        for k, v in _inputs(rng, shape, training).items()}
                result = vjp_on(student, EXERCISE, args, where)
                if result is None:
                    continue
                case = f" ({dtype_text(dtype)} inputs on {where})"
                if where == "meta":
                    expect_like(result.output, shape=shape, dtype=dtype, device="meta",
                                quantity=f"output for {_describe(args)}{case}", hint=HINT_TRAINING)
                else:
                    _expect_output(result, args, where, dtype, exercise, HINT_TRAINING, case=case)
                for name in STATS:  # their values are test_running_statistics' business
                    expect_like(result.inputs_after.get(name), shape=(shape[1],), dtype=dtype, device=where,
                                quantity=f"{name} after the call{case}", hint=HINT_RUNNING)


def test_no_mutation(student, rng, device, exercise):
    for shape, training in ((SHAPE_4D, True), (SHAPE_2D, False)):
        args = _inputs(rng, shape, training)
        result, _ = _call(student, args, device, grads=True, rng=rng)
        _expect_output(result, args, device, FLOAT64, exercise, HINT_TRAINING if training else HINT_EVALUATION)
        for name in DIFFERENTIABLE:
            expect_equal(result.inputs_after.get(name), args[name].to(device),
                         quantity=f"{name} after a call in {'training' if training else 'evaluation'} mode",
                         hint=HINT_NO_MUTATION)
