"""Regularization for multilayer perceptrons: inverted dropout."""

import torch


def dropout(X, drop_prob):
    """Inverted dropout in training mode.

    Y_ij = X_ij / (1 - p) with probability 1 - p,   Y_ij = 0 with probability p,   p = drop_prob

    Each element is dropped independently, with randomness from torch's global generator on
    ``X``'s device (so ``torch.manual_seed`` reproduces a call). Dividing the survivors by 1 - p
    keeps E[Y] = X. The gradient is masked by the same draw: dY_ij/dX_ij = keep_ij / (1 - p).
    ``drop_prob == 1`` drops everything and returns zeros (no 0 / 0).
    """
    if not 0.0 <= drop_prob <= 1.0:  # also rejects nan
        raise ValueError(f"drop_prob must lie in [0, 1], got {drop_prob!r}")
    keep = torch.rand_like(X) >= drop_prob  # P(U >= p) = 1 - p for U ~ Uniform[0, 1)
    kept = torch.where(keep, X, 0.0)
    if drop_prob == 1.0:
        return kept
    return kept / (1.0 - drop_prob)
