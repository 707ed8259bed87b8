"""Hints a student reads, each written once and shown by both sides: the hidden suites (when a
graded test fails) and the public checks (when the public case that previews that test fails).
They explain the contract and the usual fix; they never describe a hidden input."""

# softmax ----------------------------------------------------------------------------------------
SOFTMAX_VALUES = (
    "softmax(X)_ij = exp(X_ij) / sum_k exp(X_ik): exponentiate, then divide by the sum over the last "
    "dimension, kept for broadcasting (X_exp.sum(dim=-1, keepdim=True))"
)
SOFTMAX_STABLE = (
    "subtract each row's own maximum before exponentiating (X - X.max(dim=-1, keepdim=True).values): "
    "softmax does not change, but exp of large inputs no longer overflows to inf (inf / inf is nan) "
    "and very negative rows no longer underflow to 0 / 0"
)
SOFTMAX_BATCH = (
    "reduce over the last dimension with dim=-1 and keepdim=True so that the sums broadcast back, "
    "whatever the number of leading dimensions (X.sum(1) only works for 2-D inputs)"
)

# cross_entropy ----------------------------------------------------------------------------------
CROSS_ENTROPY_VALUES = (
    "pick each row's probability of its own label, y_hat[i, y[i]] (e.g. y_hat[range(len(y_hat)), y] "
    "or torch.gather), and return -log of it for every example"
)

# dropout ----------------------------------------------------------------------------------------
DROPOUT_EDGE_ZERO = "with drop_prob = 0 nothing is dropped and 1 / (1 - 0) = 1: the output equals X"
DROPOUT_EDGE_ONE = (
    "with drop_prob = 1 everything is dropped: X * 0 / (1 - 1) is 0 / 0 = nan, so return zeros (e.g. "
    "torch.zeros_like(X)) in that case"
)

# corr2d -----------------------------------------------------------------------------------------
CORR2D_VALUES = (
    "Y[i, j] = (X[i:i + kh, j:j + kw] * K).sum() for i < h - kh + 1 and j < w - kw + 1: slide K over "
    "X without flipping it"
)

# clip_grad --------------------------------------------------------------------------------------
CLIP_GRAD_CLIP = (
    "compute the global norm over all gradients, ||g|| = sqrt(sum over parameters of (p.grad ** "
    "2).sum()), and if ||g|| > theta multiply every p.grad by theta / ||g|| in place "
    "(p.grad.mul_(...) or p.grad[:] *= ...)"
)
CLIP_GRAD_SMALL = (
    "clip only when ||g|| > theta; otherwise leave every gradient exactly as it is (multiplying by "
    "theta / ||g|| > 1 would enlarge it)"
)
CLIP_GRAD_PER_TENSOR = (
    "||g|| is ONE norm over all gradients together (sqrt of the sum of every p.grad's squared "
    "entries), and every gradient is scaled by the same factor theta / ||g||"
)

# adam_step --------------------------------------------------------------------------------------
ADAM_STEP_UPDATE = (
    "for each parameter: v = beta1 v + (1 - beta1) g, s = beta2 s + (1 - beta2) g^2, v_hat = v / (1 - "
    "beta1^t), s_hat = s / (1 - beta2^t), p -= lr v_hat / (sqrt(s_hat) + eps), all in place under "
    "torch.no_grad()"
)
ADAM_STEP_EPS = "eps is added after the square root: sqrt(s_hat) + eps, not sqrt(s_hat + eps)"

# self_attention ---------------------------------------------------------------------------------
SELF_ATTENTION_VALUES = (
    "Q = X @ W_q, K = X @ W_k, V = X @ W_v; scores = Q @ K.transpose(-2, -1) / sqrt(d_k) with d_k = "
    "W_q.shape[-1]; weights = softmax over the last dimension (the keys); return weights @ V"
)

# q_learning_update ------------------------------------------------------------------------------
Q_LEARNING_UPDATE_UPDATE = (
    "target = r + gamma * Q[s_next].max() (or r alone when done), then Q[s, a] += alpha * (target - "
    "Q[s, a]), in place on the Q you are given"
)
Q_LEARNING_UPDATE_TERMINAL = (
    "when done is True the episode ends there: target = r, with no gamma * max Q[s_next] term"
)
