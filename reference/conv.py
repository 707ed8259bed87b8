"""Convolutional networks: cross-correlation, multi-channel convolution with stride and padding,
and pooling.

``conv2d`` and ``pool2d`` take every window at once as a strided view of the (padded) input
(``Tensor.unfold``, im2col without the copy) and reduce it: a contraction with the kernel for the
convolution, a max or a mean for pooling. Nothing is allocated on the default device, so results
keep the input's device and dtype.
"""

import torch
import torch.nn.functional as F


def corr2d(X, K):
    """Two-dimensional cross-correlation of ``X`` (h, w) with kernel ``K`` (kh, kw).

    Y[i, j] = sum_{a < kh, b < kw} X[i + a, j + b] * K[a, b],   Y: (h - kh + 1, w - kw + 1)

    The kernel is not flipped (that would be a convolution). All windows are taken at once as a
    strided view of ``X`` of shape (h - kh + 1, w - kw + 1, kh, kw) and contracted with ``K``.
    """
    kh, kw = K.shape
    windows = X.unfold(0, kh, 1).unfold(1, kw, 1)
    return torch.einsum("ijab,ab->ij", windows, K)


def _windows(X, kh, kw, stride, padding, fill=0.0):
    """The (kh, kw) windows of ``X`` (n, c, h, w) zero- (or ``fill``-) padded by ``padding`` on
    every side, taken every ``stride`` positions: a view of shape (n, c, h_out, w_out, kh, kw)
    with h_out = (h + 2 padding - kh) // stride + 1 (likewise w_out)."""
    if padding:
        X = F.pad(X, (padding, padding, padding, padding), value=fill)
    return X.unfold(2, kh, stride).unfold(3, kw, stride)


def conv2d(X, K, b=None, stride=1, padding=0):
    """Multi-channel 2-D cross-correlation of ``X`` (n, c_in, h, w) with ``K`` (c_out, c_in, kh, kw),
    plus the bias ``b`` (c_out,) if given, like ``torch.nn.functional.conv2d``.

    Y[m, o, i, j] = b[o] + sum_{c < c_in} sum_{a < kh, b' < kw}
                        X_pad[m, c, i stride + a, j stride + b'] * K[o, c, a, b']

    where ``X_pad`` is ``X`` with ``padding`` zeros on each of its four sides, and
    Y: (n, c_out, h_out, w_out), h_out = (h + 2 padding - kh) // stride + 1 (likewise w_out).
    The kernel is not flipped; the sum runs over the input channels as well as the window.
    """
    kh, kw = K.shape[-2:]
    windows = _windows(X, kh, kw, stride, padding)  # (n, c_in, h_out, w_out, kh, kw)
    Y = torch.einsum("ncijab,ocab->noij", windows, K)
    if b is not None:
        Y = Y + b.reshape(1, -1, 1, 1)
    return Y


def pool2d(X, kernel_size, stride=None, padding=0, mode="max"):
    """Max or average pooling of ``X`` (n, c, h, w) over ``kernel_size`` x ``kernel_size`` windows,
    channel by channel, like ``max_pool2d`` / ``avg_pool2d(count_include_pad=True)``.

    Y[m, c, i, j] = max  / mean   X_pad[m, c, i stride + a, j stride + b]
                    a, b < kernel_size

    ``stride`` defaults to ``kernel_size`` (windows side by side, no overlap); ``X_pad`` is ``X``
    padded by ``padding`` on each side with -inf for max (padding never wins) and zeros for avg
    (counted in the mean: always divide by kernel_size^2). Y: (n, c, h_out, w_out) with h_out as
    for ``conv2d``. For max the gradient flows to the maximum of each window.
    """
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', not {mode!r}")
    stride = kernel_size if stride is None else stride
    fill = float("-inf") if mode == "max" else 0.0
    windows = _windows(X, kernel_size, kernel_size, stride, padding, fill)
    if mode == "max":
        return windows.amax(dim=(-2, -1))
    return windows.mean(dim=(-2, -1))
