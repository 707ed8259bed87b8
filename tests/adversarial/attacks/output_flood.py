# Flood the grader's output: 300 MB on stdout and on stderr at load time and at every call, and a
# 10 MB exception message.
# %% new
import os
import sys

chunk = "x" * (1 << 20) + "\n"
for _ in range(150):
    sys.stdout.write(chunk)
    os.write(2, chunk.encode())
# %% softmax
import os

import torch

calls = 0


def softmax(X):
    global calls
    calls += 1
    for _ in range(50):
        os.write(1, b"y" * (1 << 20))
    if calls % 2:
        raise ValueError("z" * (10 << 20))
    return torch.zeros_like(X)
