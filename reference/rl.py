"""Reinforcement learning: the tabular Q-learning update."""

import torch


def q_learning_update(Q, s, a, r, s_next, done, alpha, gamma):
    """One Q-learning update of the table ``Q`` (n_states, n_actions), in place.

    target = r                                  if done (no bootstrap from a terminal state)
    target = r + gamma * max_a' Q[s_next, a']   otherwise
    delta  = target - Q[s, a]                   (the TD error)
    Q[s, a] <- Q[s, a] + alpha * delta          (no other entry changes)

    Returns delta as a Python float.
    """
    with torch.no_grad():
        target = r if done else r + gamma * Q[s_next].max()
        td_error = target - Q[s, a]  # a new tensor: evaluated before Q[s, a] changes
        Q[s, a] += alpha * td_error
    return float(td_error)
