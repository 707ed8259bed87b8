"""Gated recurrent cells: one step of a GRU and of an LSTM (d2l's parameter names)."""

import torch


def gru_cell(x, h, params):
    """One step of a gated recurrent unit (d2l, Cho et al. 2014).

    x: (batch, d_in); h: (batch, d_h); params: a dict of W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh,
    W_hh, b_h (W_x*: (d_in, d_h), W_h*: (d_h, d_h), b_*: (d_h,)).

    z  = sigmoid(x W_xz + h W_hz + b_z)            update gate
    r  = sigmoid(x W_xr + h W_hr + b_r)            reset gate
    h~ = tanh(x W_xh + (r * h) W_hh + b_h)         candidate: the reset gate scales h before W_hh
    h' = z * h + (1 - z) * h~                      z = 1 keeps the old state

    (torch.nn.GRUCell resets after the product, r * (h W_hh + b_hn): another GRU.)
    """
    p = params
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    h_tilde = torch.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])
    return z * h + (1 - z) * h_tilde


def lstm_cell(x, state, params):
    """One step of a long short-term memory cell (d2l, Hochreiter and Schmidhuber 1997).

    x: (batch, d_in); state = (h, c), each (batch, d_h); params: a dict of W_xi, W_hi, b_i, W_xf,
    W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c (shapes as for the GRU).

    i  = sigmoid(x W_xi + h W_hi + b_i)            input gate
    f  = sigmoid(x W_xf + h W_hf + b_f)            forget gate
    o  = sigmoid(x W_xo + h W_ho + b_o)            output gate
    c~ = tanh(x W_xc + h W_hc + b_c)               candidate memory
    c' = f * c + i * c~                            the forget gate scales the old memory
    h' = o * tanh(c')

    Returns (h', c'), like torch.nn.LSTMCell.
    """
    h, c = state
    p = params
    i = torch.sigmoid(x @ p["W_xi"] + h @ p["W_hi"] + p["b_i"])
    f = torch.sigmoid(x @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])
    o = torch.sigmoid(x @ p["W_xo"] + h @ p["W_ho"] + p["b_o"])
    c_tilde = torch.tanh(x @ p["W_xc"] + h @ p["W_hc"] + p["b_c"])
    c_next = f * c + i * c_tilde
    return o * torch.tanh(c_next), c_next
