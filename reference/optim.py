"""Optimization: the updates of SGD with momentum, Adagrad, RMSProp and Adam, written out."""

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


def sgd_momentum_step(params, velocities, lr, momentum):
    """One step of SGD with (heavy-ball) momentum, in place on parameters and velocities.

    For each parameter p with gradient g and velocity v (zero before the first step):
        v <- momentum v + g            (the first step gives v = g; no dampening)
        p <- p - lr v                  (no Nesterov look-ahead)

    This is ``torch.optim.SGD(params, lr, momentum)`` with its other options at their defaults.
    No autograd history is recorded and gradients are not zeroed. Returns None.
    """
    with torch.no_grad():
        for p, v in zip(params, velocities):
            v.mul_(momentum).add_(p.grad)
            p.sub_(lr * v)


def adagrad_step(params, states, lr, eps=1e-10):
    """One Adagrad step, in place on parameters and states.

    For each parameter p with gradient g and state s (the running sum of squared gradients,
    zero before the first step):
        s <- s + g^2                   (a plain sum: no decay)
        p <- p - lr g / (sqrt(s) + eps)    (eps after the root)

    This is ``torch.optim.Adagrad(params, lr, eps=eps)`` with its other options at their defaults.
    No autograd history is recorded and gradients are not zeroed. Returns None.
    """
    with torch.no_grad():
        for p, s in zip(params, states):
            g = p.grad
            s.addcmul_(g, g)
            p.sub_(lr * g / (torch.sqrt(s) + eps))


def rmsprop_step(params, states, lr, alpha=0.99, eps=1e-8):
    """One RMSProp step, in place on parameters and states.

    For each parameter p with gradient g and state s (a leaky average of squared gradients,
    zero before the first step):
        s <- alpha s + (1 - alpha) g^2
        p <- p - lr g / (sqrt(s) + eps)    (eps after the root; no bias correction)

    This is ``torch.optim.RMSprop(params, lr, alpha, eps)`` with its other options at their
    defaults. No autograd history is recorded and gradients are not zeroed. Returns None.
    """
    with torch.no_grad():
        for p, s in zip(params, states):
            g = p.grad
            s.mul_(alpha).addcmul_(g, g, value=1 - alpha)
            p.sub_(lr * g / (torch.sqrt(s) + eps))
