"""The reinforcement-learning references of the second wave: ``sarsa_update`` on hand-checked
updates, ``value_iteration`` against a hand-solved MDP, against every deterministic policy of small
random MDPs (the optimal value dominates them all) and against gymnasium's FrozenLake model, whose
greedy policy must reach the goal in the real environment.
"""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.rl import mdp_tensors, q_learning_update, sarsa_update, value_iteration
from test_reference import EXACT, PROPERTIES, assert_close, f64, generator
from autograder.course.registry import Tolerance

CLOSE = Tolerance(rtol=0.0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# sarsa_update


def _table():
    return torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)


@pytest.mark.parametrize("a_next, target", [(0, 1.0 + 0.9 * 1.0), (1, 1.0 + 0.9 * 2.0)])
def test_sarsa_bootstraps_from_the_action_taken_next(a_next, target):
    Q = _table()
    td = sarsa_update(Q, 0, 1, 1.0, 1, a_next, False, 0.5, 0.9)
    assert type(td) is float and math.isclose(td, target, abs_tol=1e-15), f"TD error {td}, expected {target}"
    assert_close(Q, f64([[0.0, 0.5 * target], [1.0, 2.0]]), CLOSE, f"Q after a SARSA step with a_next={a_next}")


def test_sarsa_terminal_step_ignores_the_next_state():
    Q = _table()
    td = sarsa_update(Q, 0, 0, -1.0, 1, 1, True, 0.25, 0.9)
    assert td == -1.0
    assert_close(Q, f64([[-0.25, 0.0], [1.0, 2.0]]), EXACT, "Q after a terminal SARSA step")


def test_sarsa_differs_from_q_learning_exactly_when_a_next_is_not_greedy():
    gen = generator(40)
    for a_next in range(4):
        Q = torch.randn(5, 4, dtype=torch.float64, generator=gen)
        Q_sarsa, Q_q = Q.clone(), Q.clone()
        sarsa_update(Q_sarsa, 2, 3, 0.5, 4, a_next, False, 0.3, 0.95)
        q_learning_update(Q_q, 2, 3, 0.5, 4, False, 0.3, 0.95)
        greedy = int(Q[4].argmax()) == a_next
        assert torch.equal(Q_sarsa, Q_q) == greedy, f"a_next={a_next}, greedy={greedy}"


@PROPERTIES
@given(
    n_states=st.integers(1, 6), n_actions=st.integers(1, 5), data=st.data(), done=st.booleans(),
    r=st.floats(-10, 10), alpha=st.floats(0.0, 1.0), gamma=st.floats(0.0, 0.999),
    dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 2**31 - 1),
)
def test_sarsa_property(n_states, n_actions, data, done, r, alpha, gamma, dtype, seed):
    s, s_next = (data.draw(st.integers(0, n_states - 1)) for _ in range(2))
    a, a_next = (data.draw(st.integers(0, n_actions - 1)) for _ in range(2))
    Q = torch.randn(n_states, n_actions, dtype=dtype, generator=generator(seed))
    before = Q.clone()
    ptr = Q.data_ptr()
    td = sarsa_update(Q, s, a, r, s_next, a_next, done, alpha, gamma)
    target = r if done else r + gamma * float(before[s_next, a_next])
    expected = before.double().clone()
    expected[s, a] += alpha * (target - float(before[s, a]))
    tolerance = Tolerance(rtol=1e-6, atol=1e-5) if dtype == torch.float32 else Tolerance(rtol=1e-12, atol=1e-12)
    assert Q.data_ptr() == ptr and Q.dtype == dtype, "the table was replaced or converted"
    assert_close(Q.double(), expected, tolerance, "Q after the update")
    assert math.isclose(td, target - float(before[s, a]), rel_tol=tolerance.rtol, abs_tol=tolerance.atol)
    others = Q.clone()
    others[s, a] = before[s, a]
    assert_close(others, before, EXACT, "entries other than Q[s, a]")


# --------------------------------------------------------------------------------------------
# value_iteration


def policy_value(P, R, gamma, policy):
    """V^pi = (I - gamma P_pi)^-1 R_pi, exactly (a linear solve), in float64."""
    S = P.shape[0]
    rows = torch.arange(S)
    P_pi, R_pi = P[rows, policy].double(), R[rows, policy].double()
    return torch.linalg.solve(torch.eye(S, dtype=torch.float64) - gamma * P_pi, R_pi)


def optimal_value_by_enumeration(P, R, gamma):
    """max over every deterministic policy of V^pi, elementwise (one policy attains it everywhere)."""
    S, A = R.shape
    values = torch.stack([policy_value(P, R, gamma, torch.tensor(p)) for p in itertools.product(range(A), repeat=S)])
    return values.max(dim=0).values


def random_mdp(S, A, gen, dtype=torch.float64):
    P = torch.rand(S, A, S, generator=gen, dtype=torch.float64) ** 3  # some nearly-zero transitions
    P = P / P.sum(dim=-1, keepdim=True)
    R = torch.randn(S, A, generator=gen, dtype=torch.float64)
    return P.to(dtype), R.to(dtype)


def test_value_iteration_solves_the_hand_solved_mdp():
    # two states; in s0: 0 = stay (reward 1), 1 = move to s1 (reward 0); in s1: 0 = stay (reward 2), 1 = back.
    # V(s1) = 2 / (1 - 0.9) = 20; in s0 staying is worth 1 / (1 - 0.9) = 10 < moving: 0 + 0.9 * 20 = 18.
    P = f64([[[1, 0], [0, 1]], [[0, 1], [1, 0]]])
    R = f64([[1, 0], [2, 0]])
    V, policy = value_iteration(P, R, 0.9)
    assert_close(V, f64([18.0, 20.0]), Tolerance(rtol=0, atol=1e-6), "V of the hand-solved MDP")
    assert policy.dtype == torch.int64 and policy.tolist() == [1, 0], f"policy {policy}"


def test_value_iteration_stops_within_the_contraction_bound():
    gen = generator(41)
    for gamma, tol in [(0.5, 1e-8), (0.9, 1e-8), (0.99, 1e-6), (0.9, 1e-2)]:
        P, R = random_mdp(4, 3, gen)
        V, policy = value_iteration(P, R, gamma, tol)
        V_star = optimal_value_by_enumeration(P, R, gamma)
        bound = tol * gamma / (1 - gamma) + 1e-12
        assert (V - V_star).abs().max() <= bound, f"gamma={gamma}, tol={tol}: |V - V*| above {bound}"
        # the greedy policy of a nearly optimal V is optimal here (no near-ties in these MDPs)
        assert_close(policy_value(P, R, gamma, policy), V_star, Tolerance(rtol=0, atol=1e-9), "V of the policy")


def test_value_iteration_breaks_ties_towards_the_lowest_action():
    # deterministic transitions (sums of one term, exact in any order); actions 1 and 3 tie in
    # state 0, every action ties in the absorbing state 2
    P = torch.zeros(3, 4, 3, dtype=torch.float64)
    P[0, 0, 0] = P[0, 1, 1] = P[0, 2, 2] = P[0, 3, 1] = 1.0
    P[1, :, 2] = 1.0
    P[2, :, 2] = 1.0
    R = f64([[0, 1, 0, 1], [5, 5, 3, 5], [0, 0, 0, 0]])
    V, policy = value_iteration(P, R, 0.5)
    assert policy.tolist() == [1, 0, 0], f"policy {policy.tolist()}"
    assert_close(V, f64([3.5, 5.0, 0.0]), CLOSE, "V")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_value_iteration_keeps_dtype_and_device(dtype):
    P, R = random_mdp(5, 2, generator(42), dtype)
    V, policy = value_iteration(P, R, 0.8, 1e-5)
    assert (V.dtype, V.shape, policy.dtype, policy.shape) == (dtype, (5,), torch.int64, (5,))
    assert_close(V.double(), optimal_value_by_enumeration(P.double(), R.double(), 0.8),
                 Tolerance(rtol=0, atol=1e-4), "float32 V")


def test_value_iteration_with_gamma_zero_is_the_best_immediate_reward():
    P, R = random_mdp(6, 3, generator(43))
    V, policy = value_iteration(P, R, 0.0)
    assert_close(V, R.max(dim=1).values, EXACT, "V with gamma = 0")
    assert torch.equal(policy, R.argmax(dim=1))


def success_probability(P, policy, *, start, goal, horizon):
    """Probability that following ``policy`` from ``start`` enters ``goal`` within ``horizon`` steps."""
    S = P.shape[0]
    P_pi = P[torch.arange(S), policy].clone()
    P_pi[goal] = 0.0  # count each arrival once
    dist = torch.zeros(S, dtype=P.dtype)
    dist[start] = 1.0
    reached = 0.0
    for _ in range(horizon):
        dist = dist @ P_pi
        reached += float(dist[goal])
    return reached


def _lake_model(**kwargs):
    env = gym.make("FrozenLake-v1", **kwargs)
    P, R = mdp_tensors(env)
    return env, P, R


def test_mdp_tensors_of_frozen_lake():
    env, P, R = _lake_model(is_slippery=True)
    assert P.shape == (16, 4, 16) and R.shape == (16, 4)
    assert_close(P.sum(dim=-1), torch.ones(16, 4, dtype=torch.float64), CLOSE, "rows of P")
    assert_close(R[14], f64([0.0, 1 / 3, 1 / 3, 1 / 3]), CLOSE, "rewards next to the goal")
    assert_close(P[5], torch.eye(16, dtype=torch.float64)[5].expand(4, 16), EXACT, "a hole is absorbing")


@pytest.mark.parametrize("slippery", [False, True], ids=["deterministic", "slippery"])
def test_value_iteration_on_frozen_lake_reaches_the_goal(slippery):
    gamma = 0.99
    env, P, R = _lake_model(is_slippery=slippery, map_name="8x8")
    V, policy = value_iteration(P, R, gamma)
    V_pi = policy_value(P, R, gamma, policy)
    # V is the value of its own greedy policy (within the stopping bound), and satisfies Bellman's equation
    assert_close(V, V_pi, Tolerance(rtol=0, atol=1e-8 * gamma / (1 - gamma) + 1e-12), "V vs V of its policy")
    assert_close(V, (R + gamma * P @ V).max(dim=1).values, Tolerance(rtol=0, atol=1e-8), "Bellman residual")
    terminal = torch.tensor([c in b"HG" for c in env.unwrapped.desc.flatten().tolist()])
    assert (policy[terminal] == 0).all(), "absorbing states: every action ties, so action 0"
    # roll the greedy policy out in the real environment: the goal is reached as often as the model predicts
    horizon = env.spec.max_episode_steps
    goal = int(torch.nonzero(torch.tensor([c == b"G" for c in env.unwrapped.desc.flatten().tolist()])))
    p_goal = success_probability(P, policy, start=0, goal=goal, horizon=horizon)
    episodes = 1 if not slippery else 400
    reached = 0
    for episode in range(episodes):
        s, _ = env.reset(seed=episode)
        while True:
            s, r, terminated, truncated, _ = env.step(int(policy[s]))
            if terminated or truncated:
                reached += r > 0
                break
    if not slippery:
        assert p_goal == 1.0 and reached == 1, "the deterministic lake's greedy policy must reach the goal"
    else:  # 6 standard deviations of a binomial frequency: a correct rollout fails about 1e-9 of the time
        assert p_goal > 0.5, f"the greedy policy reaches the goal with probability {p_goal:.3f} only"
        allowed = 6 * math.sqrt(p_goal * (1 - p_goal) / episodes)
        assert abs(reached / episodes - p_goal) < allowed, (
            f"reached the goal in {reached} of {episodes} episodes, the model says {p_goal:.3f} ± {allowed:.3f}")
    env.close()
