"""Reinforcement learning: the tabular Q-learning and SARSA updates, and value iteration."""

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


def sarsa_update(Q, s, a, r, s_next, a_next, done, alpha, gamma):
    """One SARSA update of the table ``Q`` (n_states, n_actions), in place.

    target = r                                  if done (no bootstrap from a terminal state)
    target = r + gamma * Q[s_next, a_next]      otherwise: the action actually taken next
    delta  = target - Q[s, a]                   (the TD error)
    Q[s, a] <- Q[s, a] + alpha * delta          (no other entry changes)

    On-policy: the target follows the behaviour policy's own next action (exploratory ones
    included), where Q-learning takes the greedy max. Returns delta as a Python float.
    """
    with torch.no_grad():
        target = r if done else r + gamma * Q[s_next, a_next]
        td_error = target - Q[s, a]
        Q[s, a] += alpha * td_error
    return float(td_error)


def value_iteration(P, R, gamma, tol=1e-8):
    """Value iteration on a finite MDP with transitions ``P`` (S, A, S) and rewards ``R`` (S, A).

    Q_k(s, a) = R(s, a) + gamma * sum_s' P(s, a, s') V_k(s')
    V_{k+1}(s) = max_a Q_k(s, a)                    from V_0 = 0, until max_s |V_{k+1} - V_k| < tol

    Returns ``(V, policy)``: the last V (S,) and the greedy policy argmax_a Q(s, a) of it, an
    int64 (S,) tensor, ties broken towards the lowest action index. For 0 <= gamma < 1 the update
    is a gamma-contraction in the max norm, so it converges, and the final V is within
    tol * gamma / (1 - gamma) of the optimal value function.
    """
    V = torch.zeros(P.shape[0], dtype=R.dtype, device=R.device)
    while True:
        V_new = (R + gamma * (P @ V)).amax(dim=1)
        change = (V_new - V).abs().max()
        V = V_new
        if not change >= tol:  # also stops on nan rather than looping forever
            break
    Q = R + gamma * (P @ V)
    return V, torch.argmax(Q, dim=1)  # argmax returns the first (lowest) index among equal maxima


def mdp_tensors(env, dtype=torch.float64):
    """A gymnasium toy-text environment's model ``env.unwrapped.P`` as tensors ``(P, R)``.

    ``env.unwrapped.P[s][a]`` lists ``(probability, s_next, reward, terminated)`` outcomes (the same
    ``s_next`` may occur more than once); P[s, a, s_next] sums their probabilities and R[s, a] is
    the expected reward sum_k p_k r_k. In FrozenLake the holes and the goal only lead back to
    themselves with reward 0, so their value is 0, as a terminal state's must be. Not an exercise:
    a helper of the tests and hidden suites (the notebook provides its own copy).
    """
    model = env.unwrapped.P
    n_states, n_actions = env.observation_space.n, env.action_space.n
    P = torch.zeros((n_states, n_actions, n_states), dtype=dtype)
    R = torch.zeros((n_states, n_actions), dtype=dtype)
    for s in range(n_states):
        for a in range(n_actions):
            for p, s_next, r, _ in model[s][a]:
                P[s, a, int(s_next)] += p
                R[s, a] += p * r
    return P, R
