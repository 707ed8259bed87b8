"""Optimization: the Adam update, written out."""

import torch


def init_adam_states(params):
    """Adam's state for each parameter: first and second moment estimates ``(v, s)``, zero."""
    return [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]


def adam_step(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step at 1-based step number ``t``, in place on parameters and states.

    For each parameter p with gradient g and state (v, s):
        v <- beta1 v + (1 - beta1) g
        s <- beta2 s + (1 - beta2) g^2
        v_hat = v / (1 - beta1^t),   s_hat = s / (1 - beta2^t)       (bias correction)
        p <- p - lr v_hat / (sqrt(s_hat) + eps)                      (eps after the root)

    No autograd history is recorded and gradients are not zeroed. Returns None.
    """
    with torch.no_grad():
        for p, (v, s) in zip(params, states):
            g = p.grad
            v.mul_(beta1).add_(g, alpha=1 - beta1)
            s.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            v_hat = v / (1 - beta1**t)
            s_hat = s / (1 - beta2**t)
            p.sub_(lr * v_hat / (torch.sqrt(s_hat) + eps))
