# Exhaust the grader's memory with data that costs the student nothing: a zero-stride expand()
# view of one element, 512 MiB once materialised, returned from every call; then a tensor just
# under the per-call cap, many times, to spend the per-submission budget of reply bytes.
# %% softmax
import torch

calls = 0


def softmax(X):
    global calls
    calls += 1
    if calls % 2:
        return torch.zeros(1, dtype=torch.float64).expand(1 << 26)
    return torch.zeros(7 << 20, dtype=torch.float64)  # 56 MiB
