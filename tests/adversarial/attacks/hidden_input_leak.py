# Carry the hidden inputs out through the report: every channel the student's text reaches
# (exception messages, the type name of a returned object, a class named after the data).
# %% softmax
import torch

calls = 0


def softmax(X):
    global calls
    calls += 1
    values = "_".join(f"{v:.6f}" for v in X.flatten()[:4].tolist()).replace("-", "m").replace(".", "p")
    if calls % 3 == 1:
        raise ValueError(f"HIDDENLEAK {X.flatten()[:8].tolist()} {X.shape}")
    if calls % 3 == 2:
        return type(f"HIDDENLEAK_{values}", (), {})()
    raise type(f"HIDDENLEAK_{values}", (Exception,), {})("HIDDENLEAK")
