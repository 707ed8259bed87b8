"""Linear models: softmax regression's softmax and cross-entropy loss."""

import torch


def softmax(X):
    """Softmax over the last dimension of ``X`` (shape ``(..., q)``), numerically stable.

    softmax(X)_ij = exp(X_ij - m_i) / sum_k exp(X_ik - m_i),   m_i = max_k X_ik

    Subtracting the row maximum m_i leaves the result unchanged (softmax is invariant to adding a
    constant to a row) but keeps every exponent <= 0, so nothing overflows and the largest term of
    each denominator is exactly 1. The maximum stays on the autograd path; its contributions to the
    gradient cancel, so the gradient is that of the plain formula.
    """
    X_exp = torch.exp(X - X.amax(dim=-1, keepdim=True))
    return X_exp / X_exp.sum(dim=-1, keepdim=True)


def cross_entropy(y_hat, y):
    """Per-example cross-entropy loss of predicted probabilities ``y_hat`` for labels ``y``.

    l_i = -log(y_hat[i, y_i]),   y_hat: (n, q) probabilities,  y: (n,) int64 labels in [0, q)

    Returns the ``(n,)`` losses, not their mean.
    """
    y_hat_of_label = torch.gather(y_hat, -1, y.unsqueeze(-1)).squeeze(-1)
    return -torch.log(y_hat_of_label)
