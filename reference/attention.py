"""Attention: scaled dot-product self-attention with an optional boolean mask."""

import math

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
