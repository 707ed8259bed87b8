# Forbidden call through aliases: torch.nn.functional.softmax imported under another name, stored
# in a dictionary and called through a lambda.
# %% softmax
from torch.nn.functional import softmax as normalise_rows

import torch.nn.functional as nnf

TOOLS = {"norm": normalise_rows, "other": nnf}


def softmax(X):
    helper = lambda t: TOOLS["norm"](t, dim=-1)
    return helper(X)
