# Forbidden call through importlib and __import__ with computed module names.
# %% softmax
import importlib

MODULE = "torch.nn." + "functional"


def softmax(X):
    functional = importlib.import_module(MODULE)
    if X.dim() > 1:
        return functional.softmax(X, dim=-1)
    return __import__("torch").nn.functional.softmax(X, dim=-1)
