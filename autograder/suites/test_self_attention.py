"""Hidden tests of ``self_attention(X, W_q, W_k, W_v, mask=None)`` (docs/exercises.md §7): scaled
dot-product self-attention, ``softmax(Q K^T / sqrt(d_k), masked scores -inf) V``, where a boolean
mask's True means "may attend".

Rows whose mask allows no key are not graded: both the student's output and the expected one are
set to zero there before comparing.
"""

from __future__ import annotations

import math

import torch

from autograder.course.hints import SELF_ATTENTION_VALUES as HINT_VALUES
from autograder.grading.compare import (expect_close, expect_equal, expect_gradient, expect_like, has_nonfinite,
                                        matches, tolerance_for)
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, expect_attempted, integer, normal,
                                       reference_output, reference_vjp, shape_text, value_and_propagation_devices,
                                       vjp_on)
from reference import self_attention as reference_self_attention

EXERCISE = "self_attention"

#: batch, tokens, model width, query/key width, value width: all different, so that a scale by the
#: wrong width or a swapped projection changes the result.
BATCH, N, D, D_K, D_V = 2, 5, 6, 4, 3
#: Scale of the projections in the stability test: scores in the thousands overflow exp.
LARGE_SCALE = 30.0
#: Probability that a random mask allows a query-key pair.
MASK_DENSITY = 0.6
#: (batch, n, d, d_k, d_v, mask kind) of the shape test.
ODD_CASES = ((1, 1, 3, 2, 4, None), (3, 7, 5, 8, 2, "2d"), (1, 4, 2, 1, 1, "batch_1"), (2, 6, 4, 3, 5, "full"))
NAMES = ("X", "W_q", "W_k", "W_v")

HINT_GRADIENT = "compute everything with differentiable torch operations (@, softmax, masked_fill, torch.where)"
HINT_MASK = ("True in the mask means 'may attend': set the scores where the mask is False to -inf before the softmax "
             "(scores.masked_fill(~mask, float('-inf')) or torch.where(mask, scores, -inf)); the mask broadcasts "
             "against (batch, n, n)")
HINT_STABLE = ("subtract each row's maximum score before exponentiating (or use torch.softmax, which is allowed "
               "here): exp of scores in the thousands overflows to inf")
HINT_SHAPES = ("use batched matrix products (@ or torch.bmm) and K.transpose(-2, -1), which works for any batch size "
               "(K.T reverses every dimension of a 3-D tensor); d_k is W_q.shape[-1], the output is (batch, n, d_v)")


def _inputs(rng, batch=BATCH, n=N, d=D, d_k=D_K, d_v=D_V, scale=1.0, mask=None):
    return {"X": normal(rng, batch, n, d), "W_q": normal(rng, d, d_k, scale=scale / math.sqrt(d)),
            "W_k": normal(rng, d, d_k, scale=scale / math.sqrt(d)), "W_v": normal(rng, d, d_v), "mask": mask}


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def _random_mask(rng, shape, every_row=True) -> torch.Tensor:
    """A random boolean mask; with ``every_row`` each query may attend to at least one key."""
    mask = torch.rand(shape, generator=rng) < MASK_DENSITY
    if every_row:
        keys = torch.randint(0, shape[-1], shape[:-1], generator=rng)
        mask.scatter_(-1, keys.unsqueeze(-1), True)
    return mask


def _attention(X, W_q, W_k, W_v, mask, *, scale=None, dim=-1, transpose=False, masking="-inf"):
    """Attention written out with one thing changeable: the known mistakes (float64, CPU)."""
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    scores = (K @ Q.transpose(-2, -1)) if transpose else (Q @ K.transpose(-2, -1))
    scores = scores / (math.sqrt(W_q.shape[-1]) if scale is None else scale)
    if mask is not None and masking == "-inf":
        scores = scores.masked_fill(~mask, -math.inf)
    elif mask is not None and masking == "zero":
        scores = scores.masked_fill(~mask, 0.0)
    elif mask is not None and masking == "inverted":
        scores = scores.masked_fill(mask, -math.inf)
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and masking == "after":
        weights = weights * mask
    return weights @ V  # rows without any allowed key come out nan: undefined, never compared


def _mistakes(args) -> dict[str, object]:
    X, W_q, W_k, W_v = (args[n].detach().cpu().to(FLOAT64) for n in NAMES)
    mask = args["mask"]
    d, d_k = W_q.shape
    mistakes = {
        "scores not scaled by 1 / sqrt(d_k)": lambda: _attention(X, W_q, W_k, W_v, mask, scale=1.0),
        "scores divided by d_k instead of sqrt(d_k)": lambda: _attention(X, W_q, W_k, W_v, mask, scale=d_k),
        "scores scaled by 1 / sqrt(d), the model width, instead of 1 / sqrt(d_k) with d_k = W_q.shape[-1]":
            lambda: _attention(X, W_q, W_k, W_v, mask, scale=math.sqrt(d)),
        "scores scaled by 1 / sqrt(d_v) instead of 1 / sqrt(d_k)":
            lambda: _attention(X, W_q, W_k, W_v, mask, scale=math.sqrt(W_v.shape[1])),
        "a softmax over the queries (dim=-2) instead of over the keys (the last dimension)":
            lambda: _attention(X, W_q, W_k, W_v, mask, dim=-2),
        "scores K Q^T instead of Q K^T (query i must score key j at row i, column j)":
            lambda: _attention(X, W_q, W_k, W_v, mask, transpose=True),
    }
    if mask is not None:
        mistakes.update({
            "the mask inverted: True means 'may attend', so the scores where the mask is False get -inf":
                lambda: _attention(X, W_q, W_k, W_v, mask, masking="inverted"),
            "masked scores set to 0 instead of -inf (exp(0) = 1 still gives them weight)":
                lambda: _attention(X, W_q, W_k, W_v, mask, masking="zero"),
            "the weights multiplied by the mask after the softmax (they no longer sum to one): mask the scores "
            "with -inf before the softmax": lambda: _attention(X, W_q, W_k, W_v, mask, masking="after"),
            "the mask ignored: " + HINT_MASK: lambda: _attention(X, W_q, W_k, W_v, None),
        })
    return mistakes


def _graded_rows(args) -> torch.Tensor:
    """(batch, n, 1) bool: query rows with at least one allowed key."""
    batch, n = args["X"].shape[:2]
    mask = args["mask"]
    if mask is None:
        return torch.ones(batch, n, 1, dtype=torch.bool)
    return torch.broadcast_to(mask, (batch, n, n)).any(dim=-1, keepdim=True)


def _expect_output(output, args, where, dtype, exercise, quantity, hint):
    expected = reference_output(reference_self_attention, args)
    output = expect_like(output, shape=expected.shape, dtype=dtype, device=where, quantity=quantity, hint=hint,
                         mistakes=_mistakes(args))
    if where == "meta":
        return
    graded = _graded_rows(args)
    if not bool(graded.all()):  # rows with no allowed key are not graded
        output = torch.where(graded.to(output.device), output, 0.0)
        expected = torch.where(graded, expected, 0.0)
    if has_nonfinite(output) and hint is HINT_VALUES:
        hint = HINT_STABLE
    expect_close(output, expected.to(where, dtype), quantity=quantity, exercise=exercise, hint=hint,
                 mistakes=_mistakes(args))


def _case(args) -> str:
    X = args["X"]
    text = f"X of shape {shape_text(X.shape)}, d_k={args['W_q'].shape[1]}, d_v={args['W_v'].shape[1]}"
    if args["mask"] is not None:
        text += f", mask of shape {shape_text(args['mask'].shape)}"
    return text


def test_values(student, rng, device, exercise):
    for dtype in (FLOAT64, FLOAT32):
        args = {k: (v.to(dtype) if v is not None and v.is_floating_point() else v) for k, v in _inputs(rng).items()}
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result.output, args, device, dtype, exercise, f"output for {dtype_text(dtype)} {_case(args)}",
                       HINT_VALUES)


def test_gradients(student, rng, device, exercise):
    for mask in (None, _random_mask(rng, (BATCH, N, N))):
        args = _inputs(rng, mask=mask)
        upstream = normal(rng, BATCH, N, D_V)
        result = student.vjp(EXERCISE, args, grad_wrt=NAMES, upstream=upstream, device=device)
        case = " with a mask" if mask is not None else ""
        _expect_output(result.output, args, device, FLOAT64, exercise, f"output{case}", HINT_VALUES)
        _, grads = reference_vjp(reference_self_attention, args, NAMES, upstream)
        for name in NAMES:
            expect_gradient(result.calls[0], name, grads[name].to(device), exercise=exercise, hint=HINT_GRADIENT,
                            case=case)


def test_causal_mask(student, rng, device, exercise):
    args = _inputs(rng, mask=_causal(N))
    upstream = normal(rng, BATCH, N, D_V)
    result = student.vjp(EXERCISE, args, grad_wrt=["X"], upstream=upstream, device=device)
    _expect_output(result.output, args, device, FLOAT64, exercise, f"output with a causal mask, {_case(args)}",
                   HINT_MASK)
    _, grads = reference_vjp(reference_self_attention, args, ["X"], upstream)
    expect_gradient(result.calls[0], "X", grads["X"].to(device), exercise=exercise, hint=HINT_MASK,
                    case=" with a causal mask")


def test_padding_mask(student, rng, device, exercise):
    # keys beyond each sequence's length are padding: a (batch, 1, n) mask broadcast over the queries
    lengths = [integer(rng, 1, N + 1) for _ in range(BATCH)]
    padding = torch.stack([torch.arange(N) < length for length in lengths]).unsqueeze(1)
    args = _inputs(rng, mask=padding)
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result.output, args, device, FLOAT64, exercise, f"output with a padding mask, {_case(args)}",
                   HINT_MASK)
    # a full (batch, n, n) mask in which one query may attend to nothing: that row is not graded
    mask = _random_mask(rng, (BATCH, N, N))
    mask[integer(rng, 0, BATCH), integer(rng, 0, N)] = False
    args = _inputs(rng, mask=mask)
    result = student.vjp(EXERCISE, args, device=device)
    _expect_output(result.output, args, device, FLOAT64, exercise,
                   f"output with a mask that leaves one query without keys (that row is not graded), {_case(args)}",
                   HINT_MASK)


def test_stability(student, rng, device, exercise):
    """Owns: no nan/inf and exact values for scores of large magnitude. A finite output that a known
    value or mask mistake explains passes here: those are test_values' and the mask tests' (whether
    saturated scores hide them would depend on the drawn inputs)."""
    for mask in (None, _causal(N)):
        args = _inputs(rng, scale=LARGE_SCALE, mask=mask)
        result = student.vjp(EXERCISE, args, device=device)
        output = result.output
        if isinstance(output, torch.Tensor) and output.device.type != "meta" and not has_nonfinite(output):
            tol = tolerance_for(FLOAT64, exercise)
            graded = _graded_rows(args)
            if any(matches(torch.where(graded, output.detach().cpu(), 0.0),
                           torch.where(graded, candidate() if callable(candidate) else candidate, 0.0), tol)
                   for candidate in _mistakes(args).values()):
                continue
        _expect_output(result.output, args, device, FLOAT64, exercise,
                       f"output for scores of large magnitude{' with a causal mask' if mask is not None else ''}",
                       HINT_STABLE)


def _odd_mask(rng, kind, batch, n):
    if kind is None:
        return None
    if kind == "2d":
        return _random_mask(rng, (n, n))
    if kind == "batch_1":
        return _random_mask(rng, (1, n, n))
    return _random_mask(rng, (batch, n, n))


def test_shapes(student, rng, device, exercise):
    for batch, n, d, d_k, d_v, kind in ODD_CASES:
        args = _inputs(rng, batch, n, d, d_k, d_v, mask=_odd_mask(rng, kind, batch, n))
        result = student.vjp(EXERCISE, args, device=device)
        _expect_output(result.output, args, device, FLOAT64, exercise, f"output for {_case(args)}", HINT_SHAPES)
    for layout in ("transposed", "strided"):  # views with other strides: same values
        args = _inputs(rng, mask=_causal(N))
        layouts = {name: layout for name in ("X", "W_q", "W_k", "W_v")}
        result = student.vjp(EXERCISE, args, device=device, layouts=layouts)
        _expect_output(result.output, args, device, FLOAT64, exercise,
                       f"output for non-contiguous ({layout}) X and weights", HINT_SHAPES)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            for mask in (None, _causal(N)):
                args = {k: (v.to(dtype) if v is not None and v.is_floating_point() else v)
                        for k, v in _inputs(rng, mask=mask).items()}
                result = vjp_on(student, EXERCISE, args, where)
                if result is None:
                    continue
                _expect_output(result.output, args, where, dtype, exercise,
                               f"output for {dtype_text(dtype)} inputs on {where}"
                               f"{' with a causal mask' if mask is not None else ''}", HINT_VALUES)


HINT_NO_MUTATION = ("leave X, the weights and the mask as they are: compute new tensors (no masked_fill_, "
                    "X.mul_(...) or in-place writes into an input)")


def test_no_mutation(student, rng, device, exercise):
    """Owns: every input (X, W_q, W_k, W_v, mask) left exactly as it was. Needs an output of the
    right shape; its values are the value tests'."""
    args = _inputs(rng, mask=_causal(N))
    expect_attempted(student, EXERCISE, args, {"W_q": normal(rng, D, D_K, scale=1 / math.sqrt(D))}, device=device,
                     what="W_q (the queries)", owns="leaving the inputs unchanged")
    result = student.vjp(EXERCISE, args, device=device)
    expect_like(result.output, shape=(BATCH, N, D_V), dtype=FLOAT64, device=device, quantity="output")
    for name, value in args.items():
        expect_equal(result.inputs_after.get(name), value.to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
