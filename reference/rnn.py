"""Recurrent networks: gradient clipping by global norm."""

import torch


def clip_grad(params, theta):
    """Clip the gradients of ``params`` to global L2 norm ``theta``, in place.

    ||g|| = sqrt(sum_p sum_i p.grad_i^2)   over the parameters whose ``.grad`` is not None
    if ||g|| > theta:  p.grad <- p.grad * theta / ||g||   for every such parameter

    Returns ||g|| before clipping, as a 0-d tensor (0.0 when no parameter has a gradient).
    The factor (theta / ||g|| if ||g|| > theta, else 1) is chosen on the device and applied to
    every gradient: multiplying by exactly 1 leaves small gradients bit for bit as they were,
    and no branch on a device value forces a host synchronisation.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = torch.where(norm > theta, theta / norm, 1.0)
    for g in grads:
        g.mul_(factor)
    return norm
