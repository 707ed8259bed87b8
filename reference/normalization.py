"""Normalization layers: batch normalization, with running statistics updated in place."""

import torch


def batch_norm(X, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalization of ``X`` (n, c) or (n, c, h, w) per channel ``c``, like
    ``torch.nn.functional.batch_norm``.

    Training (statistics over the m = n, or n h w, values of each channel):
        mu = mean(X),  sigma2 = mean((X - mu)^2)                   (the biased variance)
        running_mean <- (1 - momentum) running_mean + momentum mu                     (in place)
        running_var  <- (1 - momentum) running_var  + momentum sigma2 m / (m - 1)    (unbiased)
    Evaluation: mu = running_mean, sigma2 = running_var, and the running statistics stay as they are.

        Y = gamma (X - mu) / sqrt(sigma2 + eps) + beta

    Y is differentiable with respect to X, gamma and beta; the running statistics are updated
    without recording autograd history.
    """
    dims = (0,) if X.dim() == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (X.dim() - 2)
    if training:
        mean = X.mean(dim=dims)
        var = X.var(dim=dims, correction=0)
        m = X.numel() // X.shape[1]
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            running_var.mul_(1 - momentum).add_(var * (m / (m - 1)), alpha=momentum)
    else:
        mean, var = running_mean, running_var
    X_hat = (X - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * X_hat + beta.reshape(shape)
