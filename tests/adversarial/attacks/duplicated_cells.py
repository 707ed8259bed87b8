# Duplicate cells (corpus.duplicate_cells): the hidden-test cell three times, and a second
# "setup" cell whose code disables assert_close and redefines softmax; softmax is wrong.
# %% softmax
import torch


def softmax(X):
    return torch.zeros_like(X)
