# Forbidden call through the dispatcher: torch.ops.aten._softmax (and its overload packet), which
# no Python-level name of torch.softmax covers.
# %% softmax
import torch

aten = torch.ops.aten


def softmax(X):
    return aten._softmax.default(X, -1, False)
