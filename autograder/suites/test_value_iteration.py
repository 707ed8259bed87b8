"""Hidden tests of ``value_iteration(P, R, gamma, tol=1e-8)`` (docs/exercises.md §22): iterate
``V <- max_a (R + gamma P V)`` until the largest change is below ``tol``; return ``(V, policy)``, the
greedy policy as int64 actions with ties broken towards the lowest action index.

How V is judged: value iteration stops within ``tol * gamma / (1 - gamma)`` of the optimal values
V* (or ``tol / (1 - gamma)`` if the last-but-one iterate is returned), so V is compared with V*
(computed by the reference to 1e-13) within ``STOP_SLACK * tol / (1 - gamma)``. How the policy is
judged: its action in every state must be optimal, i.e. within ``TIE_TOL`` of max_a Q*(s, a); the
lowest index among exact ties is checked where ties are exact in any order of summation
(deterministic transitions and small integer rewards, ``test_ties``). FrozenLake's model comes from
gymnasium (``env.unwrapped.P``) and the grader rolls the returned policy out in gymnasium itself.

Which test owns what: ``values`` V on random MDPs (float64, float32), ``policy`` the greedy policy,
``ties`` the lowest index, ``stopping`` iterating until the change is below tol (gamma = 0.99 needs
about two thousand sweeps), ``frozen_lake`` gymnasium's model and rollouts, ``device`` dtype and
device of both outputs, ``no_mutation`` P and R left alone.
"""

from __future__ import annotations

import math

import torch

from autograder.grading.compare import expect, expect_close, expect_equal, expect_like, fail
from autograder.course.registry import Tolerance
from autograder.suites._common import FLOAT32, FLOAT64, dtype_text, integer, normal, seed, uniform, vjp_on
from reference import value_iteration as reference_value_iteration

EXERCISE = "value_iteration"

#: States and actions of the random MDPs (states != actions, so swapped axes show).
N_STATES, N_ACTIONS = 6, 3
GAMMA = 0.9
#: The tolerance passed with float32 inputs (1e-8 is below float32's resolution of values ~10).
FLOAT32_TOL = 1e-4
#: V may be up to STOP_SLACK * tol / (1 - gamma) from V* (room for `<=` vs `<` and either iterate).
STOP_SLACK = 2.0
#: An action is optimal when its Q* is within this of the best (float64; float32: FLOAT32_TIE_TOL).
TIE_TOL, FLOAT32_TIE_TOL = 1e-6, 1e-3
#: How much worse than the optimum the myopic policy must be somewhere in a random MDP.
MYOPIC_GAP = 0.1
#: The stopping test: gamma so close to 1 that a fixed few hundred or thousand sweeps fall short.
SLOW_GAMMA = 0.99
#: FrozenLake: the slippery 4x4 map, and random deterministic 8x8 maps, both at gamma = GAMMA.
LAKE_EPISODES = 300  # rollouts of the slippery policy: the success rate must match the model's
ROLLOUT_SIGMAS = 6.0  # a correct policy's success rate leaves the band about once in 1e9 gradings

HINT_VALUES = ("start from V = 0 and repeat Q = R + gamma * (P @ V) (shape (S, A): P @ V sums over the next state), "
               "V_new = Q.max(dim=1).values, until (V_new - V).abs().max() < tol")
HINT_POLICY = ("the policy is the greedy action of the final values: (R + gamma * (P @ V)).argmax(dim=1), an int64 "
               "tensor of shape (S,)")
HINT_TIES = ("break ties towards the lowest action index: torch.argmax returns the first maximal index; a loop with "
             "`>=` or a flipped tensor picks the last one")
HINT_STOPPING = ("keep sweeping until the largest change max_s |V_new(s) - V(s)| is below tol, however many sweeps "
                 "that takes (about log(tol) / log(gamma) of them), not a fixed number")
HINT_NO_MUTATION = "do not modify P or R in place: compute new tensors"


def _random_mdp(rng, S=N_STATES, A=N_ACTIONS, gamma=GAMMA) -> tuple[torch.Tensor, torch.Tensor]:
    """A random MDP in which looking ahead matters: drawn again until the myopic policy R.argmax
    falls short of the optimum by more than MYOPIC_GAP in some state (so that a policy read off R,
    or off values that stopped too early, fails every time, whatever the seed)."""
    while True:
        P = uniform(rng, 0.0, 1.0, S, A, S) ** 3  # a few likely next states, many unlikely ones
        P = P / P.sum(dim=-1, keepdim=True)
        R = normal(rng, S, A)
        _, Q_star = _optimal(P, R, gamma)
        myopic = Q_star.gather(1, R.argmax(dim=1, keepdim=True)).squeeze(1)
        if float((Q_star.amax(dim=1) - myopic).max()) > MYOPIC_GAP:
            return P, R


def _optimal(P, R, gamma) -> tuple[torch.Tensor, torch.Tensor]:
    """V* (to 1e-13) and Q* in float64 on the CPU."""
    P, R = P.detach().cpu().to(FLOAT64), R.detach().cpu().to(FLOAT64)
    V, _ = reference_value_iteration(P, R, gamma, 1e-13)
    return V, R + gamma * (P @ V)


def _sweeps(P, R, gamma, sweeps, *, discount=None, reduce="max", next_axis="last") -> torch.Tensor:
    """V after a fixed number of sweeps from 0, with one thing changeable: the known mistakes."""
    P, R = P.detach().cpu().to(FLOAT64), R.detach().cpu().to(FLOAT64)
    V = torch.zeros(R.shape[0], dtype=FLOAT64)
    g = gamma if discount is None else discount
    for _ in range(sweeps):
        PV = P @ V if next_axis == "last" else torch.einsum("tas,t->sa", P, V)
        Q = R + g * PV
        V = {"max": Q.amax(dim=1), "mean": Q.mean(dim=1), "min": Q.amin(dim=1)}[reduce]
    return V


def _converged(P, R, gamma, *, discount=None, reduce="max", next_axis="last") -> torch.Tensor:
    """A mistaken iteration run to its own fixed point (float64)."""
    P, R = P.detach().cpu().to(FLOAT64), R.detach().cpu().to(FLOAT64)
    g = gamma if discount is None else discount
    V = torch.zeros(R.shape[0], dtype=FLOAT64)
    for _ in range(20_000):
        PV = P @ V if next_axis == "last" else torch.einsum("tas,t->sa", P, V)
        Q = R + g * PV
        V_new = {"max": Q.amax(dim=1), "mean": Q.mean(dim=1), "min": Q.amin(dim=1)}[reduce]
        if float((V_new - V).abs().max()) < 1e-12:
            return V_new
        V = V_new
    return V


def _value_mistakes(P, R, gamma) -> dict[str, object]:
    return {
        "the values after a single sweep, max_a R(s, a): " + HINT_STOPPING: lambda: _sweeps(P, R, gamma, 1),
        "gamma applied twice: V <- max_a (R + gamma * gamma * P V)": lambda: _converged(P, R, gamma, discount=gamma**2),
        "the mean over actions instead of the max (that evaluates the uniformly random policy)":
            lambda: _converged(P, R, gamma, reduce="mean"),
        "the minimum over actions instead of the maximum": lambda: _converged(P, R, gamma, reduce="min"),
        "P summed over its first axis instead of the next state (the last one): P @ V is the expected next value":
            lambda: _converged(P, R, gamma, next_axis="first"),
    }


def _unpack(output, quantity) -> tuple[object, object]:
    if not (isinstance(output, (tuple, list)) and len(output) == 2):
        kind = type(output).__name__
        fail(f"{quantity}: value_iteration returned a {kind}, not a pair (V, policy)",
             hint="return V, policy (a tuple of two tensors)")
    return output[0], output[1]


def _expect_values(V, P, R, gamma, tol, where, dtype, quantity, exercise) -> None:
    V_star, _ = _optimal(P, R, gamma)
    slack = STOP_SLACK * tol / (1 - gamma)
    rounding = exercise.tolerance(dtype)
    allowed = Tolerance(rtol=rounding.rtol, atol=rounding.atol + slack)
    expect_close(V, V_star.to(where, dtype), quantity=quantity, tol=allowed, hint=HINT_VALUES,
                 mistakes=_value_mistakes(P, R, gamma))


def _expect_policy(policy, P, R, gamma, where, quantity, tie_tol=TIE_TOL) -> torch.Tensor:
    S = R.shape[0]
    policy = expect_like(policy, shape=(S,), dtype=torch.int64, device=where, quantity=quantity, hint=HINT_POLICY)
    if policy.device.type == "meta":
        return policy
    actions = policy.detach().cpu()
    expect(bool(((actions >= 0) & (actions < R.shape[1])).all()),
           f"{quantity}: actions outside 0..{R.shape[1] - 1}", hint=HINT_POLICY)
    _, Q_star = _optimal(P, R, gamma)
    chosen = Q_star.gather(1, actions.unsqueeze(1)).squeeze(1)
    gap = Q_star.amax(dim=1) - chosen
    bad = gap > tie_tol
    if bool(bad.any()):
        worst = int(gap.argmax())
        candidates = {
            "the action of the largest immediate reward, R.argmax(dim=1), ignoring what follows": R.argmax(dim=1),
            "the worst action (argmin instead of argmax)": Q_star.argmin(dim=1),
            "the greedy policy of the values after a single sweep": (R + gamma * (P.to(FLOAT64) @ R.amax(dim=1).to(FLOAT64))).argmax(dim=1),
        }
        for description, candidate in candidates.items():
            if torch.equal(actions, candidate.cpu()):
                fail(f"{quantity}: {int(bad.sum())} of {S} states get a non-optimal action. Your policy matches "
                     f"{description}")
        fail(f"{quantity}: {int(bad.sum())} of {S} states get a non-optimal action (at state {worst} its value falls "
             f"short of the best by {gap[worst]:.3g}; allowed {tie_tol:g})", hint=HINT_POLICY)
    return actions


def _call(student, P, R, gamma, tol, device):
    args = {"P": P, "R": R, "gamma": gamma} if tol is None else {"P": P, "R": R, "gamma": gamma, "tol": tol}
    return student.vjp(EXERCISE, args, device=device)


def test_values(student, rng, device, exercise):
    for dtype, tol in ((FLOAT64, None), (FLOAT32, FLOAT32_TOL)):
        P, R = _random_mdp(rng)
        P, R = P.to(dtype), R.to(dtype)
        result = _call(student, P, R, GAMMA, tol, device)
        V, _ = _unpack(result.output, "output")
        _expect_values(V, P, R, GAMMA, tol or 1e-8, device, dtype,
                       f"V of a random {dtype_text(dtype)} MDP with {N_STATES} states and {N_ACTIONS} actions "
                       f"(gamma={GAMMA})", exercise)


def test_policy(student, rng, device, exercise):
    for gamma in (GAMMA, 0.5):
        P, R = _random_mdp(rng, gamma=gamma)
        result = _call(student, P, R, gamma, None, device)
        V, policy = _unpack(result.output, "output")
        _expect_policy(policy, P, R, gamma, device,
                       f"policy of a random MDP with {N_STATES} states and {N_ACTIONS} actions (gamma={gamma})")
        _expect_values(V, P, R, gamma, 1e-8, device, FLOAT64, f"V (gamma={gamma})", exercise)


def _tied_mdp(rng, S=7, A=4) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic transitions to higher-numbered states only (the last one absorbing, reward 0),
    small integer rewards and gamma = 1/2: every value is a dyadic rational reached exactly after S
    sweeps, so equal values are equal bit for bit in any implementation. In every state two actions
    lead to the same place with the same reward, often the best one; the absorbing state ties all."""
    R = torch.randint(-2, 3, (S, A), generator=rng).to(FLOAT64)
    nxt = torch.full((S, A), S - 1, dtype=torch.int64)
    for s in range(S - 1):
        nxt[s] = torch.randint(s + 1, S, (A,), generator=rng)
        first, second = sorted(torch.randperm(A, generator=rng)[:2].tolist())
        R[s, first] += 3 * integer(rng, 0, 2)
        nxt[s, second], R[s, second] = nxt[s, first], R[s, first]
    R[S - 1] = 0.0
    P = torch.zeros(S, A, S, dtype=FLOAT64)
    P.scatter_(2, nxt.unsqueeze(2), 1.0)
    return P, R


def test_ties(student, rng, device, exercise):
    for _ in range(3):
        P, R = _tied_mdp(rng)
        while torch.equal(R.argmax(dim=1), reference_value_iteration(P, R, 0.5)[1]):
            P, R = _tied_mdp(rng)  # looking ahead must matter here too
        result = _call(student, P, R, 0.5, None, device)
        V, policy = _unpack(result.output, "output")
        _expect_values(V, P, R, 0.5, 1e-8, device, FLOAT64, "V of an MDP with tied actions", exercise)
        _, expected = reference_value_iteration(P, R, 0.5)
        _, Q_star = _optimal(P, R, 0.5)
        best = Q_star == Q_star.amax(dim=1, keepdim=True)  # exact: every value here is a dyadic rational
        A = R.shape[1]
        highest = A - 1 - best.flip(1).to(torch.int64).argmax(dim=1)
        expect_equal(expect_like(policy, shape=expected.shape, dtype=torch.int64, device=device,
                                 quantity="policy of an MDP with tied actions", hint=HINT_POLICY).cpu(),
                     expected, quantity=f"policy of an MDP with tied actions ({A} actions)", hint=HINT_TIES,
                     mistakes={"the highest index among tied actions: " + HINT_TIES: highest})


def test_stopping(student, rng, device, exercise):
    P, R = _random_mdp(rng, 4, 2, SLOW_GAMMA)
    R = R.abs() + 1.0  # values near 100 / (1 - gamma): a few hundred sweeps leave them far off
    result = _call(student, P, R, SLOW_GAMMA, None, device)
    V, _ = _unpack(result.output, "output")
    mistakes = {f"the values after a fixed {k} sweeps: " + HINT_STOPPING: (lambda k=k: _sweeps(P, R, SLOW_GAMMA, k))
                for k in (1, 10, 100, 500, 1000)}
    V_star, _ = _optimal(P, R, SLOW_GAMMA)
    allowed = Tolerance(rtol=1e-7, atol=STOP_SLACK * 1e-8 / (1 - SLOW_GAMMA))
    expect_close(V, V_star.to(device), quantity=f"V with gamma={SLOW_GAMMA} and the default tol (about 2 000 sweeps)",
                 tol=allowed, hint=HINT_STOPPING, mistakes=mistakes)


# --------------------------------------------------------------------------------------- FrozenLake

def _lake(desc=None, map_name=None, slippery=False):
    import gymnasium as gym

    from reference.rl import mdp_tensors

    kwargs = {"desc": desc} if desc is not None else {"map_name": map_name}
    env = gym.make("FrozenLake-v1", is_slippery=slippery, **kwargs)
    P, R = mdp_tensors(env)
    cells = [c.decode() for c in env.unwrapped.desc.flatten().tolist()]
    return env, P, R, cells.index("S"), cells.index("G")


def _success_probability(P, actions, start, goal, horizon) -> float:
    """Probability that following ``actions`` from ``start`` enters ``goal`` within ``horizon`` steps."""
    S = P.shape[0]
    P_pi = P[torch.arange(S), actions].clone()
    P_pi[goal] = 0.0  # count each arrival once
    dist = torch.zeros(S, dtype=FLOAT64)
    dist[start] = 1.0
    reached = 0.0
    for _ in range(horizon):
        dist = dist @ P_pi
        reached += float(dist[goal])
    return reached


def _rollouts(env, actions, episodes, first_seed) -> int:
    """How many of ``episodes`` gymnasium episodes following ``actions`` end at the goal."""
    reached = 0
    for episode in range(episodes):
        s, _ = env.reset(seed=first_seed + episode)
        while True:
            s, r, terminated, truncated, _ = env.step(int(actions[s]))
            if terminated or truncated:
                reached += r > 0
                break
    return reached


def test_frozen_lake(student, rng, device, exercise):
    from gymnasium.envs.toy_text.frozen_lake import generate_random_map

    # a random deterministic 8x8 lake: the policy must walk to the goal
    env, P, R, start, goal = _lake(desc=generate_random_map(size=8, seed=seed(rng)))
    result = _call(student, P, R, GAMMA, None, device)
    V, policy = _unpack(result.output, "output")
    _expect_values(V, P, R, GAMMA, 1e-8, device, FLOAT64, "V of a random 8x8 FrozenLake (is_slippery=False)", exercise)
    actions = _expect_policy(policy, P, R, GAMMA, device, "policy of a random 8x8 FrozenLake (is_slippery=False)")
    expect(_rollouts(env, actions, 1, seed(rng)) == 1,
           "the policy does not reach the goal of a deterministic 8x8 FrozenLake when the grader follows it in "
           "gymnasium", hint=HINT_POLICY)
    env.close()
    # the slippery 4x4 lake: the goal is reached as often as the optimal policy's model predicts
    env, P, R, start, goal = _lake(map_name="4x4", slippery=True)
    result = _call(student, P, R, GAMMA, None, device)
    V, policy = _unpack(result.output, "output")
    _expect_values(V, P, R, GAMMA, 1e-8, device, FLOAT64, "V of the slippery 4x4 FrozenLake", exercise)
    actions = _expect_policy(policy, P, R, GAMMA, device, "policy of the slippery 4x4 FrozenLake")
    horizon = env.spec.max_episode_steps
    p_goal = _success_probability(P, actions, start, goal, horizon)
    reached = _rollouts(env, actions, LAKE_EPISODES, seed(rng))
    band = ROLLOUT_SIGMAS * math.sqrt(max(p_goal * (1 - p_goal), 1e-3) / LAKE_EPISODES)
    expect(abs(reached / LAKE_EPISODES - p_goal) <= band,
           f"following the policy in gymnasium's slippery FrozenLake reached the goal in {reached} of "
           f"{LAKE_EPISODES} episodes, where its model predicts {p_goal:.3f}: please report this to the course staff")
    env.close()


def test_device(student, rng, device, propagation_devices, exercise):
    for where in [device, *[d for d in propagation_devices if d not in (device, "meta")]]:
        for dtype, tol in ((FLOAT32, FLOAT32_TOL), (FLOAT64, None)):
            P, R = _random_mdp(rng)
            P, R = P.to(dtype), R.to(dtype)
            args = {"P": P, "R": R, "gamma": GAMMA} if tol is None else {"P": P, "R": R, "gamma": GAMMA, "tol": tol}
            result = vjp_on(student, EXERCISE, args, where)
            if result is None:
                continue
            V, policy = _unpack(result.output, f"output for {dtype_text(dtype)} inputs on {where}")
            _expect_values(V, P, R, GAMMA, tol or 1e-8, where, dtype, f"V for {dtype_text(dtype)} inputs on {where}",
                           exercise)
            _expect_policy(policy, P, R, GAMMA, where, f"policy for {dtype_text(dtype)} inputs on {where}",
                           FLOAT32_TIE_TOL if dtype == FLOAT32 else TIE_TOL)


def test_no_mutation(student, rng, device, exercise):
    P, R = _random_mdp(rng)
    result = _call(student, P, R, GAMMA, None, device)
    for name, value in (("P", P), ("R", R)):
        expect_equal(result.inputs_after[name], value.to(device), quantity=f"{name} after the call",
                     hint=HINT_NO_MUTATION)
    # leaving the inputs alone is only worth a point when the function also does its job
    V, _ = _unpack(result.output, "output")
    _expect_values(V, P, R, GAMMA, 1e-8, device, FLOAT64, "V", exercise)
