"""The reference GRU and LSTM cells against PyTorch's ``nn.GRUCell`` / ``nn.LSTMCell``.

PyTorch stacks the gates' weights in one matrix per input, transposed (``weight_ih``:
``(gates * d_h, d_in)``; ``nn.LSTMCell`` in the order i, f, g, o, ``nn.GRUCell`` in the order r, z, n),
with two bias vectors; d2l keeps one ``(d_in, d_h)`` matrix per gate and one bias. The weights are
copied across (``b_hh`` = 0) and the cells compared on values and on the gradients of every input and
parameter. ``nn.GRUCell`` puts the reset gate after the hidden product, ``r * (h W_hh + b_hn)``,
where the contract (d2l, Cho et al. 2014) has ``(r * h) W_hh``: the reference GRU is compared with it
where the reset gate is fully open (r = 1, where both agree), and the one-line variant that resets
after the product is compared with it everywhere. Hypothesis checks the gates' limiting cases,
row independence, memory layouts, dtypes and ``meta``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.gated_rnn import gru_cell, lstm_cell

FLOAT_DTYPES = (torch.float64, torch.float32)
DTYPE_IDS = ("float64", "float32")
#: Tolerances (rtol, atol) per dtype: the registry's defaults, for a float64 oracle rounded to dtype.
TOLERANCE = {torch.float64: (1e-7, 1e-7), torch.float32: (1.3e-6, 1e-5)}
#: A gate pre-activation this large saturates sigmoid to exactly 1.0 (0.0 when negated) in both
#: float32 and float64: 1 / (1 + e^-40) rounds to 1.
SATURATED = 40.0
#: Shapes (batch, d_in, d_h), with batch / input / state of size one.
SHAPES = ((3, 5, 4), (1, 1, 1), (1, 7, 2), (6, 2, 9))
GRU_NAMES = ("W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h")
LSTM_NAMES = ("W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o", "W_xc", "W_hc", "b_c")
#: The same examples on every run (a CI gate must not depend on luck); REFERENCE_EXPLORE=1 draws
#: fresh ones, REFERENCE_MAX_EXAMPLES=N more of them.
PROPERTIES = settings(max_examples=int(os.environ.get("REFERENCE_MAX_EXAMPLES", "40")), deadline=None,
                      derandomize=os.environ.get("REFERENCE_EXPLORE") != "1")


def close(actual, expected, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def make_params(names, d_in, d_h, gen, dtype=torch.float64, scale=0.5):
    """d2l-shaped parameters: W_x* (d_in, d_h), W_h* (d_h, d_h), b_* (d_h,)."""
    shapes = {"x": (d_in, d_h), "h": (d_h, d_h), "b": (d_h,)}
    out = {}
    for name in names:
        kind = "b" if name.startswith("b_") else name[2]
        out[name] = (torch.randn(shapes[kind], generator=gen, dtype=torch.float64) * scale).to(dtype)
    return out


def leaves(tensors: dict, dtype=None) -> dict:
    return {k: (v.detach() if dtype is None else v.detach().to(dtype)).requires_grad_() for k, v in tensors.items()}


# ------------------------------------------------------------------------------- PyTorch cells


def torch_gru(x, h, params):
    """``nn.GRUCell`` with the d2l parameters copied in (gate order r, z, n; transposed)."""
    p = params
    cell = torch.nn.GRUCell(x.shape[1], h.shape[1], dtype=x.dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            delattr(cell, name)  # plain attributes instead, so that gradients reach ``params``
    cell.weight_ih = torch.cat([p["W_xr"], p["W_xz"], p["W_xh"]], dim=1).T
    cell.weight_hh = torch.cat([p["W_hr"], p["W_hz"], p["W_hh"]], dim=1).T
    cell.bias_ih = torch.cat([p["b_r"], p["b_z"], p["b_h"]])
    cell.bias_hh = torch.zeros_like(cell.bias_ih)
    return cell(x, h)


def torch_lstm(x, state, params):
    """``nn.LSTMCell`` with the d2l parameters copied in (gate order i, f, g, o; transposed)."""
    p = params
    h, c = state
    cell = torch.nn.LSTMCell(x.shape[1], h.shape[1], dtype=x.dtype)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        delattr(cell, name)
    cell.weight_ih = torch.cat([p["W_xi"], p["W_xf"], p["W_xc"], p["W_xo"]], dim=1).T
    cell.weight_hh = torch.cat([p["W_hi"], p["W_hf"], p["W_hc"], p["W_ho"]], dim=1).T
    cell.bias_ih = torch.cat([p["b_i"], p["b_f"], p["b_c"], p["b_o"]])
    cell.bias_hh = torch.zeros_like(cell.bias_ih)
    return cell(x, (h, c))


def gru_reset_after(x, h, params):
    """The reference GRU with one change, the reset gate applied after the hidden product (as in
    ``nn.GRUCell`` and cuDNN): h~ = tanh(x W_xh + r * (h W_hh) + b_h)."""
    p = params
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    h_tilde = torch.tanh(x @ p["W_xh"] + r * (h @ p["W_hh"]) + p["b_h"])
    return z * h + (1 - z) * h_tilde


# ------------------------------------------------------------------------------- comparisons


def compare_gru(fn, oracle, x, h, params, dtype, seed, what):
    """``fn`` in ``dtype`` against ``oracle`` in float64 (rounded to dtype): the output and the
    gradients of x, h and every parameter for a random upstream gradient."""
    inputs = {"x": x, "h": h, **params}
    mine, ref = leaves(inputs, dtype), leaves(inputs, torch.float64)
    out = fn(mine["x"], mine["h"], {k: mine[k] for k in params})
    expected = oracle(ref["x"], ref["h"], {k: ref[k] for k in params})
    close(out, expected.detach().to(dtype), dtype, f"{what}: h'")
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    grads = torch.autograd.grad(out, list(mine.values()), upstream.to(dtype))
    expected_grads = torch.autograd.grad(expected, list(ref.values()), upstream)
    for name, g, e in zip(inputs, grads, expected_grads):
        close(g, e.to(dtype), dtype, f"{what}: gradient of {name}")


def compare_lstm(fn, oracle, x, h, c, params, dtype, seed, what):
    inputs = {"x": x, "h": h, "c": c, **params}
    mine, ref = leaves(inputs, dtype), leaves(inputs, torch.float64)
    h_out, c_out = fn(mine["x"], (mine["h"], mine["c"]), {k: mine[k] for k in params})
    h_exp, c_exp = oracle(ref["x"], (ref["h"], ref["c"]), {k: ref[k] for k in params})
    close(h_out, h_exp.detach().to(dtype), dtype, f"{what}: h'")
    close(c_out, c_exp.detach().to(dtype), dtype, f"{what}: c'")
    gen = torch.Generator().manual_seed(seed)
    up_h = torch.randn(h_exp.shape, generator=gen, dtype=torch.float64)
    up_c = torch.randn(c_exp.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((h_out, c_out), list(mine.values()), (up_h.to(dtype), up_c.to(dtype)))
    expected_grads = torch.autograd.grad((h_exp, c_exp), list(ref.values()), (up_h, up_c))
    for name, g, e in zip(inputs, grads, expected_grads):
        close(g, e.to(dtype), dtype, f"{what}: gradient of {name}")


# ------------------------------------------------------------------------------------------ GRU


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gru_matches_torch_gru_cell_where_the_reset_gate_is_open(shape, dtype):
    batch, d_in, d_h = shape
    gen = torch.Generator().manual_seed(batch * 100 + d_in * 10 + d_h)
    params = make_params(GRU_NAMES, d_in, d_h, gen)
    params["b_r"] = params["b_r"] + SATURATED  # r = 1: (r * h) W_hh = r * (h W_hh)
    x = torch.randn(batch, d_in, generator=gen, dtype=torch.float64)
    h = torch.randn(batch, d_h, generator=gen, dtype=torch.float64).tanh()
    compare_gru(gru_cell, torch_gru, x, h, params, dtype, seed=1, what=f"gru_cell {shape} {dtype}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gru_with_the_reset_after_the_product_is_torch_gru_cell(shape, dtype):
    """The only difference from nn.GRUCell is where the reset gate acts: with that one line
    changed, the reference is nn.GRUCell everywhere (gate order, transposes, z convention)."""
    batch, d_in, d_h = shape
    gen = torch.Generator().manual_seed(7 + batch * 100 + d_in * 10 + d_h)
    params = make_params(GRU_NAMES, d_in, d_h, gen, scale=1.0)
    x = torch.randn(batch, d_in, generator=gen, dtype=torch.float64)
    h = torch.randn(batch, d_h, generator=gen, dtype=torch.float64).tanh()
    compare_gru(gru_reset_after, torch_gru, x, h, params, dtype, seed=2, what=f"reset-after GRU {shape} {dtype}")


def test_where_the_reset_gate_acts_matters():
    """The two GRUs differ by far more than any tolerance once r is not 1 (d_h > 1): a suite can
    tell them apart."""
    gen = torch.Generator().manual_seed(3)
    params = make_params(GRU_NAMES, 4, 6, gen, scale=1.0)
    x, h = torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(5, 6, generator=gen, dtype=torch.float64).tanh()
    assert (gru_cell(x, h, params) - gru_reset_after(x, h, params)).abs().max() > 1e-2


@PROPERTIES
@given(batch=st.integers(1, 4), d_in=st.integers(1, 5), d_h=st.integers(1, 5), dtype=st.sampled_from(FLOAT_DTYPES),
       layout=st.sampled_from(("contiguous", "transposed", "strided")), seed=st.integers(0, 2**31 - 1))
def test_gru_limiting_cases(batch, d_in, d_h, dtype, layout, seed):
    """z = 1 keeps h; z = 0 and r = 1 is a plain tanh RNN step; z = 0 and r = 0 forgets h entirely;
    each row of the batch is its own sequence; any memory layout gives the same result."""
    gen = torch.Generator().manual_seed(seed)
    params = make_params(GRU_NAMES, d_in, d_h, gen, dtype)
    x = lay_out(torch.randn(batch, d_in, generator=gen, dtype=torch.float64).to(dtype), layout)
    h = lay_out(torch.randn(batch, d_h, generator=gen, dtype=torch.float64).tanh().to(dtype), layout)
    p = dict(params)
    out = gru_cell(x, h, p)
    assert out.dtype == dtype and out.shape == (batch, d_h)
    close(out, gru_cell(x.contiguous(), h.contiguous(), p), dtype, "layout")
    for i in range(batch):
        close(out[i:i + 1], gru_cell(x[i:i + 1], h[i:i + 1], p), dtype, f"row {i}")
    keep = {**p, "b_z": p["b_z"] + SATURATED}
    close(gru_cell(x, h, keep), h, dtype, "z = 1")
    rnn = {**p, "b_z": p["b_z"] - SATURATED, "b_r": p["b_r"] + SATURATED}
    close(gru_cell(x, h, rnn), torch.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"]), dtype, "z = 0, r = 1")
    forget = {**p, "b_z": p["b_z"] - SATURATED, "b_r": p["b_r"] - SATURATED}
    close(gru_cell(x, h, forget), torch.tanh(x @ p["W_xh"] + p["b_h"]), dtype, "z = 0, r = 0")
    assert bool((out.abs() < 1).all()), "|h'| < 1 when |h| < 1: a convex combination of h and tanh(...)"


# ----------------------------------------------------------------------------------------- LSTM


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lstm_matches_torch_lstm_cell(shape, dtype):
    batch, d_in, d_h = shape
    gen = torch.Generator().manual_seed(11 + batch * 100 + d_in * 10 + d_h)
    params = make_params(LSTM_NAMES, d_in, d_h, gen, scale=1.0)
    x = torch.randn(batch, d_in, generator=gen, dtype=torch.float64)
    h = torch.randn(batch, d_h, generator=gen, dtype=torch.float64).tanh()
    c = torch.randn(batch, d_h, generator=gen, dtype=torch.float64) * 2
    compare_lstm(lstm_cell, torch_lstm, x, h, c, params, dtype, seed=4, what=f"lstm_cell {shape} {dtype}")


@PROPERTIES
@given(batch=st.integers(1, 4), d_in=st.integers(1, 5), d_h=st.integers(1, 5), dtype=st.sampled_from(FLOAT_DTYPES),
       layout=st.sampled_from(("contiguous", "transposed", "strided")), seed=st.integers(0, 2**31 - 1))
def test_lstm_limiting_cases(batch, d_in, d_h, dtype, layout, seed):
    """f = 1, i = 0 keeps the memory c; f = 0, i = 1 replaces it by the candidate; o = 0 hides it
    (h' = 0); rows are independent; any memory layout gives the same result."""
    gen = torch.Generator().manual_seed(seed)
    p = make_params(LSTM_NAMES, d_in, d_h, gen, dtype)
    x = lay_out(torch.randn(batch, d_in, generator=gen, dtype=torch.float64).to(dtype), layout)
    h = lay_out(torch.randn(batch, d_h, generator=gen, dtype=torch.float64).tanh().to(dtype), layout)
    c = lay_out(torch.randn(batch, d_h, generator=gen, dtype=torch.float64).to(dtype), layout)
    h_out, c_out = lstm_cell(x, (h, c), p)
    assert h_out.dtype == c_out.dtype == dtype and h_out.shape == c_out.shape == (batch, d_h)
    h_c, c_c = lstm_cell(x.contiguous(), (h.contiguous(), c.contiguous()), p)
    close(h_out, h_c, dtype, "layout h'")
    close(c_out, c_c, dtype, "layout c'")
    for i in range(batch):
        h_i, c_i = lstm_cell(x[i:i + 1], (h[i:i + 1], c[i:i + 1]), p)
        close(h_out[i:i + 1], h_i, dtype, f"row {i} h'")
        close(c_out[i:i + 1], c_i, dtype, f"row {i} c'")
    keep = {**p, "b_f": p["b_f"] + SATURATED, "b_i": p["b_i"] - SATURATED}
    close(lstm_cell(x, (h, c), keep)[1], c, dtype, "f = 1, i = 0")
    replace = {**p, "b_f": p["b_f"] - SATURATED, "b_i": p["b_i"] + SATURATED}
    close(lstm_cell(x, (h, c), replace)[1], torch.tanh(x @ p["W_xc"] + h @ p["W_hc"] + p["b_c"]), dtype, "f = 0, i = 1")
    hide = {**p, "b_o": p["b_o"] - SATURATED}
    close(lstm_cell(x, (h, c), hide)[0], torch.zeros_like(h_out), dtype, "o = 0")
    assert bool((h_out.abs() < 1).all())


# ------------------------------------------------------------------------------------- both cells


def lay_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values with other strides: a transposed copy seen transposed back, or every other
    element of a twice-as-wide storage."""
    if layout == "transposed":
        return t.T.contiguous().T
    if layout == "strided":
        wide = torch.zeros((t.shape[0], 2 * t.shape[1]), dtype=t.dtype)
        wide[:, ::2] = t
        return wide[:, ::2]
    return t


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_cells_keep_dtype_and_device_on_meta(dtype):
    gen = torch.Generator().manual_seed(5)
    gru = {k: v.to("meta", dtype) for k, v in make_params(GRU_NAMES, 3, 4, gen).items()}
    lstm = {k: v.to("meta", dtype) for k, v in make_params(LSTM_NAMES, 3, 4, gen).items()}
    x, h = torch.empty(2, 3, dtype=dtype, device="meta"), torch.empty(2, 4, dtype=dtype, device="meta")
    out = gru_cell(x, h, gru)
    assert (out.device.type, out.dtype, tuple(out.shape)) == ("meta", dtype, (2, 4))
    for t in lstm_cell(x, (h, h), lstm):
        assert (t.device.type, t.dtype, tuple(t.shape)) == ("meta", dtype, (2, 4))


def test_cells_do_not_mutate_their_inputs():
    gen = torch.Generator().manual_seed(6)
    gru, lstm = make_params(GRU_NAMES, 3, 4, gen), make_params(LSTM_NAMES, 3, 4, gen)
    x, h, c = (torch.randn(shape, generator=gen, dtype=torch.float64) for shape in ((2, 3), (2, 4), (2, 4)))
    before = [t.clone() for t in (x, h, c, *gru.values(), *lstm.values())]
    gru_cell(x, h, gru)
    lstm_cell(x, (h, c), lstm)
    for old, new in zip(before, (x, h, c, *gru.values(), *lstm.values())):
        assert torch.equal(old, new)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=DTYPE_IDS)
def test_unrolled_lstm_matches_torch_lstm_with_bptt(dtype):
    """Unrolled over a sequence, the cell is nn.LSTM (one layer): outputs and gradients through
    time of the inputs, the initial state and every parameter."""
    gen = torch.Generator().manual_seed(8)
    steps, batch, d_in, d_h = 6, 3, 4, 5
    params = make_params(LSTM_NAMES, d_in, d_h, gen, scale=0.7)
    xs = torch.randn(steps, batch, d_in, generator=gen, dtype=torch.float64)
    h0 = torch.randn(batch, d_h, generator=gen, dtype=torch.float64).tanh()
    c0 = torch.randn(batch, d_h, generator=gen, dtype=torch.float64)

    def unrolled(cell, xs, h, c, p):
        outs = []
        for x in xs:
            h, c = cell(x, (h, c), p)
            outs.append(h)
        return torch.stack(outs)

    inputs = {"xs": xs, "h0": h0, "c0": c0, **params}
    mine, ref = leaves(inputs, dtype), leaves(inputs, torch.float64)
    out = unrolled(lstm_cell, mine["xs"], mine["h0"], mine["c0"], {k: mine[k] for k in params})
    expected = unrolled(torch_lstm, ref["xs"], ref["h0"], ref["c0"], {k: ref[k] for k in params})
    lstm = torch.nn.LSTM(d_in, d_h, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.cat([params[k] for k in ("W_xi", "W_xf", "W_xc", "W_xo")], dim=1).T)
        lstm.weight_hh_l0.copy_(torch.cat([params[k] for k in ("W_hi", "W_hf", "W_hc", "W_ho")], dim=1).T)
        lstm.bias_ih_l0.copy_(torch.cat([params[k] for k in ("b_i", "b_f", "b_c", "b_o")]))
        lstm.bias_hh_l0.zero_()
        whole, _ = lstm(xs, (h0[None], c0[None]))
    close(expected.detach(), whole, torch.float64, "cell unrolled vs nn.LSTM")
    close(out, expected.detach().to(dtype), dtype, "unrolled outputs")
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(out, list(mine.values()), upstream.to(dtype))
    expected_grads = torch.autograd.grad(expected, list(ref.values()), upstream)
    for name, g, e in zip(inputs, grads, expected_grads):
        close(g, e.to(dtype), dtype, f"BPTT gradient of {name}")
