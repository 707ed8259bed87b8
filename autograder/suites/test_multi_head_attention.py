"""Hidden tests of ``multi_head_attention(X, W_q, W_k, W_v, W_o, num_heads, mask=None)``
(docs/exercises.md §20): project, split the last dimension into ``num_heads`` heads of ``d_h = d_model //
num_heads`` columns (head i = columns i*d_h:(i+1)*d_h), scaled dot-product attention per head
(scale 1/sqrt(d_h)) with the mask broadcast over heads, heads concatenated in order, times ``W_o``.

Which test owns what: ``values`` the formula without a mask (float64, float32, non-contiguous
weights), ``gradients`` the VJPs of X and the four weights, ``heads`` the split and merge for other
head counts and shapes, ``masks`` causal, padding and per-example masks broadcast over the heads,
``device`` dtype/device propagation, ``no_mutation`` the inputs left alone. Rows whose mask allows no
key are not graded.
"""

from __future__ import annotations

import math

import torch

from autograder.grading.compare import expect_close, expect_equal, expect_gradient, expect_like
from autograder.suites._common import (FLOAT32, FLOAT64, dtype_text, integer, normal, reference_output,
                                       reference_vjp, shape_text, value_and_propagation_devices, vjp_on)
from reference import multi_head_attention as reference_mha

EXERCISE = "multi_head_attention"

#: batch, tokens, model width, heads (d_h = 2): all different, so a swapped axis shows.
BATCH, N, D_MODEL, HEADS = 2, 5, 6, 3
#: (batch, n, d_model, num_heads) of the head test: one head, d_h = 1, four heads, a single token.
HEAD_CASES = ((2, 4, 6, 1), (1, 5, 4, 4), (2, 3, 8, 4), (3, 1, 6, 2), (1, 6, 10, 5))
#: A batch as large as the number of heads: a (batch, n, n) mask not broadcast over the heads then
#: runs without error, but pairs example b's mask with head b.
SAME_BATCH_AND_HEADS = (3, 5, 6, 3)
MASK_DENSITY = 0.6
NAMES = ("X", "W_q", "W_k", "W_v", "W_o")

HINT_VALUES = ("Q, K, V = X @ W_q, X @ W_k, X @ W_v; split each into heads with .reshape(batch, n, num_heads, d_h)"
               ".transpose(1, 2); scores = Q @ K.transpose(-2, -1) / sqrt(d_h); softmax over the last dimension; "
               "heads @ V, then .transpose(1, 2).reshape(batch, n, d_model) and @ W_o")
HINT_GRADIENT = "compute everything with differentiable torch operations (@, reshape, transpose, softmax, masked_fill)"
HINT_HEADS = ("head i is columns i*d_h:(i+1)*d_h of Q, K and V: reshape the last dimension to (num_heads, d_h) and "
              "move the head axis in front of the tokens (.transpose(1, 2)); undo exactly that before W_o, so that "
              "head i lands back in columns i*d_h:(i+1)*d_h")
HINT_MASK = ("True in the mask means 'may attend'. The mask has no head dimension: give it one so that it broadcasts "
             "over the heads (a (batch, n, n) mask becomes (batch, 1, n, n) with mask.unsqueeze(1)); a (n, n) mask "
             "broadcasts as it is. Masked scores get -inf before the softmax")
HINT_NO_MUTATION = "do not modify X or the weights in place: compute new tensors"


def _inputs(rng, batch=BATCH, n=N, d_model=D_MODEL, mask=None) -> dict:
    w = 1.0 / math.sqrt(d_model)
    return {"X": normal(rng, batch, n, d_model), "W_q": normal(rng, d_model, d_model, scale=w),
            "W_k": normal(rng, d_model, d_model, scale=w), "W_v": normal(rng, d_model, d_model, scale=w),
            "W_o": normal(rng, d_model, d_model, scale=w), "mask": mask}


def _with_heads(args: dict, num_heads: int) -> dict:
    """The arguments in signature order (num_heads before mask)."""
    return {**{k: args[k] for k in NAMES}, "num_heads": num_heads, "mask": args["mask"]}


def _mha(X, W_q, W_k, W_v, W_o, h, mask, *, split="columns", merge=None, scale="d_h", project=True,
         order="in_order", broadcast=True, softmax_dim=-1):
    """Multi-head attention written out with one thing changeable: the known mistakes (float64).
    Rows with no allowed key come out nan: undefined, never compared."""
    b, n, d = X.shape
    d_h = d // h
    merge = merge or split

    def heads_of(T):
        if split == "columns":
            return T.reshape(b, n, h, d_h).transpose(1, 2)
        if split == "interleaved":  # head i = columns i, i + h, i + 2h, ...
            return T.reshape(b, n, d_h, h).permute(0, 3, 1, 2)
        return T.reshape(b, h, n, d_h)  # "tokens": the tensor cut into blocks of tokens

    def together(H):
        if order == "reversed":
            H = H.flip(1)
        if merge == "columns":
            return H.transpose(1, 2).reshape(b, n, d)
        if merge == "interleaved":
            return H.permute(0, 2, 3, 1).reshape(b, n, d)
        return H.reshape(b, n, d)

    Q, K, V = heads_of(X @ W_q), heads_of(X @ W_k), heads_of(X @ W_v)
    scores = Q @ K.transpose(-2, -1) / math.sqrt({"d_h": d_h, "d_model": d, "none": 1}[scale])
    if mask is not None:
        full = torch.broadcast_to(mask, (b, n, n))
        scores = scores.masked_fill(~(full.unsqueeze(1) if broadcast else full), -math.inf)
    out = together(torch.softmax(scores, dim=softmax_dim) @ V)
    return out @ W_o if project else out


def _mistakes(args: dict, num_heads: int) -> dict[str, object]:
    X, W_q, W_k, W_v, W_o = (args[n].detach().cpu().to(FLOAT64) for n in NAMES)
    mask = args["mask"]
    h = num_heads

    def mistake(**change):
        return lambda: _mha(X, W_q, W_k, W_v, W_o, h, mask, **change)

    mistakes = {
        "scores scaled by 1 / sqrt(d_model) instead of 1 / sqrt(d_h), the width of one head (d_model // num_heads)":
            mistake(scale="d_model"),
        "scores not scaled by 1 / sqrt(d_h)": mistake(scale="none"),
        "no output projection: the concatenated heads must still be multiplied by W_o": mistake(project=False),
        "a softmax over the queries (dim=-2) instead of over the keys (the last dimension)": mistake(softmax_dim=-2),
    }
    if h > 1:
        mistakes.update({
            "the heads concatenated in reverse order: " + HINT_HEADS: mistake(order="reversed"),
            "heads split along the wrong axis: .reshape(batch, num_heads, n, d_h) cuts the tokens into blocks; "
            + HINT_HEADS: mistake(split="tokens"),
            "heads taken as interleaved columns (head i = columns i, i + num_heads, ...): " + HINT_HEADS:
                mistake(split="interleaved"),
            "heads split correctly but merged back with .reshape(batch, n, d_model) without transposing the head "
            "axis back first: " + HINT_HEADS: mistake(split="columns", merge="tokens"),
        })
    if mask is not None:
        mistakes["the mask ignored: " + HINT_MASK] = lambda: _mha(X, W_q, W_k, W_v, W_o, h, None)
        mistakes["the mask inverted: True means 'may attend'"] = lambda: _mha(X, W_q, W_k, W_v, W_o, h, ~mask)
        if X.shape[0] == h and mask.dim() == 3 and mask.shape[0] == X.shape[0] and h > 1:
            mistakes["a (batch, n, n) mask not broadcast over the heads: it lined up with the head axis, so head b got "
                     "example b's mask: " + HINT_MASK] = mistake(broadcast=False)
    return mistakes


def _graded_rows(args: dict) -> torch.Tensor:
    """(batch, n, 1) bool: query rows with at least one allowed key."""
    batch, n = args["X"].shape[:2]
    if args["mask"] is None:
        return torch.ones(batch, n, 1, dtype=torch.bool)
    return torch.broadcast_to(args["mask"], (batch, n, n)).any(dim=-1, keepdim=True)


def _expect_output(result, args, num_heads, where, dtype, exercise, quantity, hint):
    call = _with_heads(args, num_heads)
    expected = reference_output(reference_mha, call)
    mistakes = _mistakes(args, num_heads)
    output = expect_like(result.output, shape=expected.shape, dtype=dtype, device=where, quantity=quantity, hint=hint,
                         mistakes=mistakes)
    if where == "meta":
        return
    graded = _graded_rows(args)
    if not bool(graded.all()):  # rows with no allowed key are not graded
        output = torch.where(graded.to(output.device), output, 0.0)
        expected = torch.where(graded, expected, 0.0)
    expect_close(output, expected.to(where, dtype), quantity=quantity, exercise=exercise, hint=hint, mistakes=mistakes)


def _case(args, num_heads) -> str:
    text = f"X of shape {shape_text(args['X'].shape)}, num_heads={num_heads}"
    if args["mask"] is not None:
        text += f", mask of shape {shape_text(args['mask'].shape)}"
    return text


def _random_mask(rng, shape, every_row=True) -> torch.Tensor:
    mask = torch.rand(shape, generator=rng) < MASK_DENSITY
    if every_row:
        keys = torch.randint(0, shape[-1], shape[:-1], generator=rng)
        mask.scatter_(-1, keys.unsqueeze(-1), True)
    return mask


def _call(student, args, num_heads, device, **kwargs):
    return student.vjp(EXERCISE, _with_heads(args, num_heads), device=device, **kwargs)


def test_values(student, rng, device, exercise):
    for dtype in (FLOAT64, FLOAT32):
        args = {k: (v.to(dtype) if v is not None else v) for k, v in _inputs(rng).items()}
        result = _call(student, args, HEADS, device)
        _expect_output(result, args, HEADS, device, dtype, exercise,
                       f"output for {dtype_text(dtype)} {_case(args, HEADS)}", HINT_VALUES)
    for layout in ("transposed", "strided"):  # views with other strides: same values
        args = _inputs(rng)
        result = _call(student, args, HEADS, device, layouts={name: layout for name in NAMES})
        _expect_output(result, args, HEADS, device, FLOAT64, exercise,
                       f"output for non-contiguous ({layout}) X and weights", HINT_VALUES)


def test_gradients(student, rng, device, exercise):
    for mask in (None, _random_mask(rng, (N, N))):  # (n, n): per-example masks are test_masks' business
        args = _inputs(rng, mask=mask)
        upstream = normal(rng, BATCH, N, D_MODEL)
        result = student.vjp(EXERCISE, _with_heads(args, HEADS), grad_wrt=NAMES, upstream=upstream, device=device)
        case = " with a mask" if mask is not None else ""
        _expect_output(result, args, HEADS, device, FLOAT64, exercise, f"output{case}", HINT_VALUES)
        _, grads = reference_vjp(reference_mha, _with_heads(args, HEADS), NAMES, upstream)
        for name in NAMES:
            expect_gradient(result.calls[0], name, grads[name].to(device), exercise=exercise, hint=HINT_GRADIENT,
                            case=case)


def test_heads(student, rng, device, exercise):
    for batch, n, d_model, heads in HEAD_CASES:
        args = _inputs(rng, batch, n, d_model)
        result = _call(student, args, heads, device)
        _expect_output(result, args, heads, device, FLOAT64, exercise, f"output for {_case(args, heads)}", HINT_HEADS)


def test_masks(student, rng, device, exercise):
    # first the case where a mask not broadcast over the heads runs silently (and can be named)
    batch, n, d_model, heads = SAME_BATCH_AND_HEADS
    args = _inputs(rng, batch, n, d_model, mask=_random_mask(rng, (batch, n, n)))
    result = _call(student, args, heads, device)
    _expect_output(result, args, heads, device, FLOAT64, exercise,
                   f"output with a different mask per example, {_case(args, heads)}", HINT_MASK)
    lengths = [integer(rng, 1, N + 1) for _ in range(BATCH)]
    padding = torch.stack([torch.arange(N) < length for length in lengths]).unsqueeze(1)
    no_keys = _random_mask(rng, (BATCH, N, N))
    no_keys[integer(rng, 0, BATCH), integer(rng, 0, N)] = False  # that row is not graded
    cases = (("a causal mask", torch.ones(N, N, dtype=torch.bool).tril()),
             ("a padding mask", padding),
             ("a mask that leaves one query without keys (that row is not graded)", no_keys))
    for what, mask in cases:
        args = _inputs(rng, mask=mask)
        result = _call(student, args, HEADS, device)
        _expect_output(result, args, HEADS, device, FLOAT64, exercise, f"output with {what}, {_case(args, HEADS)}",
                       HINT_MASK)


def test_device(student, rng, device, propagation_devices, exercise):
    for where in value_and_propagation_devices(device, propagation_devices):
        for dtype in (FLOAT32, FLOAT64):
            for mask in (None, torch.ones(N, N, dtype=torch.bool).tril()):
                args = {k: (v.to(dtype) if v is not None and v.is_floating_point() else v)
                        for k, v in _inputs(rng, mask=mask).items()}
                result = vjp_on(student, EXERCISE, _with_heads(args, HEADS), where)
                if result is None:
                    continue
                _expect_output(result, args, HEADS, where, dtype, exercise,
                               f"output for {dtype_text(dtype)} inputs on {where}"
                               f"{' with a causal mask' if mask is not None else ''}", HINT_VALUES)


def test_no_mutation(student, rng, device, exercise):
    args = _inputs(rng, mask=_random_mask(rng, (N, N)))
    result = _call(student, args, HEADS, device)
    for name in (*NAMES, "mask"):
        expect_equal(result.inputs_after[name], args[name].to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
    # leaving the inputs alone is only worth a point when the function also does its job
    _expect_output(result, args, HEADS, device, FLOAT64, exercise, "output", HINT_VALUES)
