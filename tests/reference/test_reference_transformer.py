"""The transformer references checked against PyTorch: ``layer_norm`` against
``F.layer_norm``, ``multi_head_attention`` against ``F.multi_head_attention_forward`` and against
``F.scaled_dot_product_attention`` run head by head (with masks), on values and gradients, in float64
and float32, on odd shapes and non-contiguous layouts, plus Hypothesis properties.

Tolerances come from the registry when the exercise is declared there, else from the defaults.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from reference.attention import multi_head_attention
from reference.transformer import layer_norm
from test_reference import (DTYPE_IDS, EXACT, FLOAT_DTYPES, LAYOUTS, PROPERTIES, assert_close, assert_matches_oracle,
                            generator, random_tensor, widened)
from autograder.course.registry import BY_NAME, DEFAULT_TOLERANCES, Tolerance


def tol(name: str, dtype: torch.dtype) -> Tolerance:
    exercise = BY_NAME.get(name)
    return exercise.tolerance(dtype) if exercise else DEFAULT_TOLERANCES[str(dtype).removeprefix("torch.")]


# --------------------------------------------------------------------------------------------
# oracles, called with the reference's parameter names


def layer_norm_oracle(X, gamma, beta, eps=1e-5):
    return F.layer_norm(X, (X.shape[-1],), gamma, beta, eps)


def mha_oracle(X, W_q, W_k, W_v, W_o, num_heads, mask=None):
    """``F.multi_head_attention_forward``: (n, batch, d) layout, weights applied as x @ W^T, and a
    boolean ``attn_mask`` whose True means "may NOT attend", one (n, n) slice per batch and head."""
    batch, n, d_model = X.shape
    attn_mask = None
    if mask is not None:
        full = torch.broadcast_to(mask, (batch, n, n))
        attn_mask = (~full).repeat_interleave(num_heads, dim=0)  # (batch * num_heads, n, n), batch-major
    x = X.transpose(0, 1)
    out, _ = F.multi_head_attention_forward(
        x, x, x, d_model, num_heads, torch.cat([W_q.T, W_k.T, W_v.T]), None, None, None, False, 0.0,
        W_o.T, None, training=False, need_weights=False, attn_mask=attn_mask)
    return out.transpose(0, 1)


def mha_sdpa_oracle(X, W_q, W_k, W_v, W_o, num_heads, mask=None):
    """Head i = ``F.scaled_dot_product_attention`` on columns i*d_h:(i+1)*d_h, heads concatenated."""
    d_h = X.shape[-1] // num_heads
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    heads = [F.scaled_dot_product_attention(Q[..., i * d_h:(i + 1) * d_h], K[..., i * d_h:(i + 1) * d_h],
                                            V[..., i * d_h:(i + 1) * d_h], attn_mask=mask)
             for i in range(num_heads)]
    return torch.cat(heads, dim=-1) @ W_o


# --------------------------------------------------------------------------------------------
# layer_norm


def _ln_inputs(shape, dtype, gen, *, layout="contiguous", scale=1.0, offset=0.0):
    d = shape[-1]
    return {"X": random_tensor(shape, dtype, gen, layout=layout, scale=scale) + offset,
            "gamma": random_tensor((d,), dtype, gen, layout=layout) + 1.0,
            "beta": random_tensor((d,), dtype, gen, layout=layout)}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_layer_norm_matches_torch(dtype):
    gen = generator(20)
    for shape in [(4, 7), (2, 3, 5), (6,), (1, 1), (3, 1), (2, 2, 2, 9)]:
        assert_matches_oracle(layer_norm, layer_norm_oracle, _ln_inputs(shape, dtype, gen),
                              tolerance=tol("layer_norm", dtype), what=f"layer_norm {dtype} {shape}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_layer_norm_eps_and_offsets(dtype):
    gen = generator(21)
    # a large common offset (the mean must be removed before squaring), tiny spreads (eps matters)
    for scale, offset, eps in [(1.0, 1e3, 1e-5), (1e-3, 0.0, 1e-5), (1e-3, 0.0, 1e-2), (5.0, -20.0, 0.0)]:
        inputs = {**_ln_inputs((5, 8), dtype, gen, scale=scale, offset=offset), "eps": eps}
        # rounding of the centred values scales with the offset in float32
        tolerance = widened(tol("layer_norm", dtype), atol_factor=1.0 + abs(offset) * (dtype == torch.float32) / 10)
        assert_matches_oracle(layer_norm, layer_norm_oracle, inputs, tolerance=tolerance,
                              what=f"layer_norm {dtype} scale={scale} offset={offset} eps={eps}")


def test_layer_norm_uses_the_biased_variance_over_the_last_dimension():
    X = torch.tensor([[1.0, 3.0], [0.0, 4.0]], dtype=torch.float64)
    ones, zeros = torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    # rows normalised on their own; the biased variance of (1, 3) is 1, so X_hat = (-1, 1) / sqrt(1 + eps)
    expected = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    assert_close(layer_norm(X, ones, zeros, eps=0.0), expected, EXACT, "layer_norm of [[1, 3], [0, 4]] with eps=0")
    assert_close(layer_norm(X, 2 * ones, ones, eps=0.0), 2 * expected + 1, EXACT, "gamma scales, beta shifts")


def test_layer_norm_of_a_constant_row_is_beta():
    X = torch.full((3, 4), 7.5, dtype=torch.float64, requires_grad=True)
    gamma, beta = torch.randn(4, dtype=torch.float64, generator=generator(22)), torch.arange(4.0, dtype=torch.float64)
    Y = layer_norm(X, gamma, beta)
    assert_close(Y.detach(), beta.expand(3, 4), EXACT, "layer_norm of constant rows")
    (grad,) = torch.autograd.grad(Y, X, torch.randn(3, 4, dtype=torch.float64, generator=generator(23)))
    assert torch.isfinite(grad).all(), "gradient of layer_norm at constant rows is not finite"


def test_layer_norm_keeps_device_and_dtype_on_meta():
    X = torch.empty(2, 3, 4, device="meta", dtype=torch.float32)
    Y = layer_norm(X, torch.empty(4, device="meta"), torch.empty(4, device="meta"))
    assert (Y.device.type, Y.dtype, tuple(Y.shape)) == ("meta", torch.float32, (2, 3, 4))


@PROPERTIES
@given(
    batch=st.lists(st.integers(1, 4), max_size=2),
    d=st.integers(1, 16),
    scale=st.sampled_from([1e-2, 1.0, 100.0]),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_layer_norm_property(batch, d, scale, layout, dtype, seed):
    inputs = _ln_inputs((*batch, d), dtype, generator(seed), layout=layout, scale=scale)
    # gradients with respect to gamma and beta sum over every row: rounding grows with their number;
    # the gradient with respect to X grows as 1 / sigma, so small inputs (scale 1e-2) round 100 times larger
    rows = math.prod(batch) if batch else 1
    # The rounding of x - mean (an ulp of |x|) is divided by the row's sigma = sqrt(var + eps): rows
    # whose values are close (d = 2, or a constant row broadcast from one value, sigma ~ sqrt(eps))
    # round up to |x| / sigma times more, and the gradient with respect to X grows as 1 / sigma.
    X = inputs["X"].detach().double()
    sigma = float((X.var(dim=-1, unbiased=False) + 1e-5).sqrt().min())
    factor = rows * max(1.0, 1.0 / sigma, float(X.abs().max()) / sigma)
    assert_matches_oracle(layer_norm, layer_norm_oracle, inputs, seed=seed,
                          tolerance=widened(tol("layer_norm", dtype), atol_factor=factor),
                          what=f"layer_norm shape={(*batch, d)} layout={layout} scale={scale} {dtype}")


# --------------------------------------------------------------------------------------------
# multi_head_attention


def _mha_inputs(batch, n, d_model, dtype, gen, *, layout="contiguous", scale=1.0):
    w = scale / math.sqrt(d_model)
    return {"X": random_tensor((batch, n, d_model), dtype, gen, layout=layout),
            **{name: random_tensor((d_model, d_model), dtype, gen, layout=layout, scale=w)
               for name in ("W_q", "W_k", "W_v", "W_o")}}


def _random_mask(shape, gen, density=0.6):
    """A random bool mask in which every query may attend to at least one key."""
    mask = torch.rand(shape, generator=gen) < density
    keys = torch.randint(0, shape[-1], shape[:-1], generator=gen)
    return mask.scatter(-1, keys.unsqueeze(-1), True)


def _masks(batch, n, gen):
    padding = torch.stack([torch.arange(n) < int(torch.randint(1, n + 1, (), generator=gen)) for _ in range(batch)])
    return {"none": None, "causal": torch.ones(n, n, dtype=torch.bool).tril(),
            "padding (batch, 1, n)": padding.unsqueeze(1), "full (batch, n, n)": _random_mask((batch, n, n), gen),
            "(1, n, n)": _random_mask((1, n, n), gen)}


MHA_SHAPES = [(2, 5, 6, 3), (1, 1, 4, 2), (3, 7, 8, 1), (2, 4, 12, 12), (1, 6, 10, 5)]  # batch, n, d_model, heads


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("oracle", [mha_oracle, mha_sdpa_oracle], ids=["multi_head_attention_forward", "sdpa_per_head"])
def test_multi_head_attention_matches_torch(dtype, oracle):
    gen = generator(30)
    for batch, n, d_model, heads in MHA_SHAPES:
        for kind, mask in _masks(batch, n, gen).items():
            inputs = {**_mha_inputs(batch, n, d_model, dtype, gen), "num_heads": heads, "mask": mask}
            assert_matches_oracle(multi_head_attention, oracle, inputs,
                                  tolerance=widened(tol("multi_head_attention", dtype), atol_factor=4),
                                  what=f"multi_head_attention {dtype} {(batch, n, d_model)} heads={heads} mask={kind}")


def test_multi_head_attention_with_one_head_is_self_attention_times_W_o():
    from reference.attention import self_attention

    gen = generator(31)
    inputs = _mha_inputs(2, 5, 6, torch.float64, gen)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    expected = self_attention(inputs["X"], inputs["W_q"], inputs["W_k"], inputs["W_v"], mask) @ inputs["W_o"]
    assert_close(multi_head_attention(**inputs, num_heads=1, mask=mask), expected, tol("multi_head_attention", torch.float64),
                 "one head")


def test_multi_head_attention_head_i_is_columns_i():
    # W_o = identity: output columns i*d_h:(i+1)*d_h are head i alone, computed from those columns
    from reference.attention import self_attention

    gen = generator(32)
    batch, n, d_model, heads = 2, 4, 6, 3
    d_h = d_model // heads
    inputs = _mha_inputs(batch, n, d_model, torch.float64, gen)
    inputs["W_o"] = torch.eye(d_model, dtype=torch.float64)
    Y = multi_head_attention(**inputs, num_heads=heads)
    for i in range(heads):
        cols = slice(i * d_h, (i + 1) * d_h)
        head = self_attention(inputs["X"], inputs["W_q"][:, cols], inputs["W_k"][:, cols], inputs["W_v"][:, cols])
        assert_close(Y[..., cols], head, tol("multi_head_attention", torch.float64), f"output columns of head {i}")


def test_multi_head_attention_rows_without_keys_are_zero():
    gen = generator(33)
    inputs = _mha_inputs(1, 3, 4, torch.float64, gen)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    Y = multi_head_attention(**inputs, num_heads=2, mask=mask)
    assert_close(Y[0, 1], torch.zeros(4, dtype=torch.float64), EXACT, "row of a query with no allowed key")
    assert torch.isfinite(Y).all()


def test_multi_head_attention_keeps_device_and_dtype_on_meta():
    X = torch.empty(2, 5, 6, device="meta")
    W = torch.empty(6, 6, device="meta")
    Y = multi_head_attention(X, W, W, W, W, 3, mask=torch.ones(5, 5, dtype=torch.bool, device="meta"))
    assert (Y.device.type, Y.dtype, tuple(Y.shape)) == ("meta", torch.float32, (2, 5, 6))


@PROPERTIES
@given(
    batch=st.integers(1, 3),
    n=st.integers(1, 6),
    d_h=st.integers(1, 4),
    heads=st.integers(1, 4),
    mask_kind=st.sampled_from(["none", "causal", "padding (batch, 1, n)", "full (batch, n, n)", "(1, n, n)"]),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_multi_head_attention_property(batch, n, d_h, heads, mask_kind, scale, layout, dtype, seed):
    gen = generator(seed)
    d_model = d_h * heads
    inputs = {**_mha_inputs(batch, n, d_model, dtype, gen, layout=layout, scale=scale), "num_heads": heads,
              "mask": _masks(batch, n, gen)[mask_kind]}
    # scores of size ~scale**2 amplify rounding of the projections through the softmax
    tolerance = widened(tol("multi_head_attention", dtype), atol_factor=4 * max(1.0, scale**2), extra_rtol=0.0)
    if dtype == torch.float32:
        tolerance = Tolerance(rtol=1e-4, atol=tolerance.atol * 10)
    assert_matches_oracle(multi_head_attention, mha_sdpa_oracle, inputs, tolerance=tolerance, seed=seed,
                          what=f"multi_head_attention {(batch, n, d_model)} heads={heads} mask={mask_kind} "
                               f"layout={layout} scale={scale} {dtype}")
