"""Attention: scaled dot-product self-attention with an optional boolean mask, and its multi-head
form."""

import math

import torch

from .linear import softmax


def self_attention(X, W_q, W_k, W_v, mask=None):
    """Scaled dot-product self-attention of ``X`` (batch, n, d).

    Q = X W_q,  K = X W_k,  V = X W_v               W_q, W_k: (d, d_k),  W_v: (d, d_v)
    S = Q K^T / sqrt(d_k),   S_ij = -inf where mask_ij is False
    A = softmax(S) over the keys (last dimension),   returns A V: (batch, n, d_v)

    ``mask`` is a bool tensor broadcastable to (batch, n, n); True means query i may attend to
    key j. A query with no allowed key attends to nothing: its row of A, hence of the output,
    is zero (its softmax would be 0 / 0), with zero gradient.
    """
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    scores = Q @ K.transpose(-2, -1) / math.sqrt(W_q.shape[-1])
    if mask is None:
        return softmax(scores) @ V
    weights = softmax(scores.masked_fill(~mask, -math.inf))
    weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)
    return weights @ V


def multi_head_attention(X, W_q, W_k, W_v, W_o, num_heads, mask=None):
    """Multi-head self-attention of ``X`` (batch, n, d_model).

    Q = X W_q,  K = X W_k,  V = X W_v                     all (batch, n, d_model)
    head i uses columns i*d_h : (i+1)*d_h of Q, K and V    d_h = d_model / num_heads
    H_i = softmax(Q_i K_i^T / sqrt(d_h), masked scores -inf) V_i        (batch, n, d_h)
    returns concat(H_0, ..., H_{h-1}) W_o                 (batch, n, d_model)

    ``mask`` (bool, broadcastable to (batch, n, n), True = may attend) is the same for every head.
    As in ``self_attention``, a query with no allowed key gets a zero row in every head.
    """
    batch, n, d_model = X.shape
    d_h = d_model // num_heads

    def split(T):  # (batch, n, d_model) -> (batch, num_heads, n, d_h): head i = columns i*d_h:(i+1)*d_h
        return T.reshape(batch, n, num_heads, d_h).transpose(1, 2)

    Q, K, V = split(X @ W_q), split(X @ W_k), split(X @ W_v)
    scores = Q @ K.transpose(-2, -1) / math.sqrt(d_h)
    if mask is None:
        heads = softmax(scores) @ V
    else:
        mask = torch.broadcast_to(mask, (batch, n, n)).unsqueeze(1)  # (batch, 1, n, n): every head
        weights = softmax(scores.masked_fill(~mask, -math.inf))
        heads = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0) @ V
    concat = heads.transpose(1, 2).reshape(batch, n, d_model)  # heads side by side, in order
    return concat @ W_o
