# Lie about dtype and device: return a uniform distribution in float16 / bfloat16 / int64 on the
# 'meta' device or the CPU, hoping that a comparison casts before comparing, or skips data-less
# tensors.
# %% softmax
import torch

calls = 0


def softmax(X):
    global calls
    calls += 1
    kind = calls % 3
    if kind == 0:
        return torch.empty(X.shape, dtype=X.dtype, device="meta")
    if kind == 1:
        return torch.full(X.shape, 1.0 / X.shape[-1], dtype=torch.float16)
    return torch.zeros(X.shape, dtype=torch.int64)
