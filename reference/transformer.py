"""Transformers: layer normalisation over the feature dimension."""

import torch


def layer_norm(X, gamma, beta, eps=1e-5):
    """Layer normalisation of ``X`` (..., d) over its **last** dimension.

    mu     = mean_j X[..., j]
    sigma2 = mean_j (X[..., j] - mu)^2             (biased: divided by d, not d - 1)
    X_hat  = (X - mu) / sqrt(sigma2 + eps)
    returns gamma * X_hat + beta                   gamma, beta: (d,), broadcast over the rest

    Every position (every row of the leading dimensions) is normalised on its own, unlike batch
    normalisation, which normalises each feature over the batch.
    """
    mu = X.mean(dim=-1, keepdim=True)
    centered = X - mu
    sigma2 = (centered * centered).mean(dim=-1, keepdim=True)
    return gamma * (centered / torch.sqrt(sigma2 + eps)) + beta
