# Return a sparse tensor (the right values, another layout): the worker cannot send it as values,
# and the gate of the property tests (no mutation, device) must judge it without crashing the
# grader (a crash would be "internal grader error", a free regrade).
# %% cross_entropy
import torch


def cross_entropy(y_hat, y):
    picked = y_hat[torch.arange(y_hat.shape[0], device=y_hat.device), y]
    return (-torch.log(picked)).to_sparse()
