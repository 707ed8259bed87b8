"""Convolutional networks: two-dimensional cross-correlation."""

import torch


def corr2d(X, K):
    """Two-dimensional cross-correlation of ``X`` (h, w) with kernel ``K`` (kh, kw).

    Y[i, j] = sum_{a < kh, b < kw} X[i + a, j + b] * K[a, b],   Y: (h - kh + 1, w - kw + 1)

    The kernel is not flipped (that would be a convolution). All windows are taken at once as a
    strided view of ``X`` of shape (h - kh + 1, w - kw + 1, kh, kw) and contracted with ``K``.
    """
    kh, kw = K.shape
    windows = X.unfold(0, kh, 1).unfold(1, kw, 1)
    return torch.einsum("ijab,ab->ij", windows, K)
