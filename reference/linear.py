"""Linear models: softmax regression's softmax and cross-entropy loss, logistic regression's loss."""

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


def bce_with_logits(z, y):
    """Per-element binary cross-entropy of logits ``z`` for targets ``y`` in [0, 1], stable.

    l = -(y log σ(z) + (1 - y) log(1 - σ(z))),   σ(z) = 1 / (1 + exp(-z))

    Since log σ(z) = -log(1 + exp(-z)) and log(1 - σ(z)) = -z - log(1 + exp(-z)),

        l = (1 - y) z + log(1 + exp(-z))       = -y z + log(1 + exp(z))
          = max(z, 0) - y z + log(1 + exp(-|z|))

    The last form never overflows (the exponent is <= 0) and log1p keeps log(1 + tiny) exact.
    max(z, 0) - y z is computed as (1 - y) z for z >= 0 and as -y z for z < 0: both are >= 0, so
    no large terms cancel and large logits of either sign give exact losses in float32 too
    (z = 1e4, y = 0.9999: l = 1). -|z| takes the same branch, so at the kink z = 0 autograd
    combines one-sided derivatives that add up to the true gradient σ(0) - y = 1/2 - y.
    Same shape as ``z``: one loss per element, not reduced.
    """
    nonnegative = z >= 0
    linear = torch.where(nonnegative, (1 - y) * z, -y * z)  # max(z, 0) - y z
    minus_abs = torch.where(nonnegative, -z, z)  # -|z|
    return linear + torch.log1p(torch.exp(minus_abs))
