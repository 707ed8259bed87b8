"""Hidden tests of ``sarsa_update(Q, s, a, r, s_next, a_next, done, alpha, gamma)`` (docs/exercises.md
§21): one tabular SARSA update of ``Q[s, a]``, in place, returning the TD error, with the on-policy
target ``r + gamma * Q[s_next, a_next]`` (``r`` alone when done).

Single updates use the exercise's ``TableUpdate`` convention (that of ``q_learning_update``).
``test_training`` runs the grader's on-policy epsilon-greedy loop on gymnasium's CliffWalking in the
worker (its ``EpisodeLoop`` convention, with ``a_next`` as the next action), checks every returned
transition against the grader's own copy of the environment, replays the transitions through the
reference update and follows the greedy policy of the learned table to the goal.

Which test owns what: ``update`` the non-terminal target (a_next, not the max), ``terminal`` no
bootstrap when done, ``td_error`` the returned value, ``only_entry_changes`` nothing but Q[s, a],
``in_place`` the caller's table, ``training`` the behaviour over a whole training run.
"""

from __future__ import annotations

import torch

from autograder.grading.compare import expect, expect_close, expect_like, fail
from autograder.suites._common import FLOAT64, integer, normal, number, seed
from autograder.suites._tabular import HINT_IN_PLACE, TableSuite
from reference import sarsa_update as reference_update

EXERCISE = "sarsa_update"

#: Table size of the single-update tests (states != actions, so swapped indices show).
N_STATES, N_ACTIONS = 7, 4
ALPHA_RANGE = (0.1, 0.9)
GAMMA_RANGE = (0.5, 0.99)
REWARD_RANGE = (-2.0, 2.0)
#: The next state's best value: large, and never at a_next, so that the max (Q-learning) shows.
BEST_NEXT_VALUE = 10.0

#: The training run: CliffWalking-v1 (4 x 12, start 36, goal 47, the cliff 37..46), EPISODES
#: on-policy episodes of at most MAX_STEPS steps, epsilon = 0.1, gamma = 1, step size 0.5 and then
#: 0.1 from episode LATE_EPISODE on, so that the table settles. Measured with a correct update on 2 000
#: runs of a replica of the loop: the greedy policy missed the goal 16 times (0.8%, both SARSA's
#: noisy values and random tie-breaking) and about 12 600 updates were made per run (at most ~20 000).
#: A run that misses the goal with a table equal to the replay is unlucky, not wrong, and is repeated
#: with a new seed, up to TRAINING_ATTEMPTS runs (a correct update then fails ~5e-7).
ENV = "CliffWalking-v1"
START, GOAL = 36, 47
EPISODES = 500
LATE_EPISODE = 300
MAX_STEPS = 200
#: The run stops after this many updates (twice the most a correct update needed): a table that never
#: learns would otherwise walk at random for EPISODES * MAX_STEPS steps.
MAX_TOTAL_STEPS = 40_000
TRAIN_ALPHAS = ((0, 0.5), (LATE_EPISODE, 0.1))
TRAIN_GAMMA = 1.0
TRAIN_EPSILON = 0.1
TRAINING_ATTEMPTS = 3
CALL = ("Q", "s", "a", "r", "s_next", "a_next", "done", "alpha", "gamma")

HINT_UPDATE = ("target = r + gamma * Q[s_next, a_next] (or r alone when done), then Q[s, a] += alpha * (target - "
               "Q[s, a]), in place on the Q you are given")
HINT_ON_POLICY = ("SARSA bootstraps from the action actually taken next, Q[s_next, a_next]; max over Q[s_next] is "
                  "Q-learning")
HINT_TERMINAL = "when done is True the episode ends there: target = r, with no gamma * Q[s_next, a_next] term"
HINT_TD = ("return the TD error target - Q[s, a], computed with the value of Q[s, a] before the update, as a Python "
           "float (e.g. float(td_error) or td_error.item())")
HINT_ONLY = "change only Q[s, a]: index the single entry (Q[s, a] += ...), not the row Q[s] or the column Q[:, a]"


def _case(rng, done: bool, dtype=FLOAT64, self_loop: bool = False) -> dict:
    s = integer(rng, 0, N_STATES)
    s_next = s if self_loop else (s + integer(rng, 1, N_STATES)) % N_STATES
    a = integer(rng, 0, N_ACTIONS)
    a_next = (a + integer(rng, 1, N_ACTIONS)) % N_ACTIONS  # a != a_next: Q[s_next, a] is a different slip
    best = [b for b in range(N_ACTIONS) if b not in (a, a_next)][integer(rng, 0, N_ACTIONS - 2)]
    Q = normal(rng, N_STATES, N_ACTIONS)
    Q[s_next, best] = BEST_NEXT_VALUE  # the max is at neither a nor a_next: Q-learning shows
    return {"Q": Q.to(dtype), "s": s, "a": a, "r": number(rng, *REWARD_RANGE), "s_next": s_next, "a_next": a_next,
            "done": done, "alpha": number(rng, *ALPHA_RANGE), "gamma": number(rng, *GAMMA_RANGE)}


def _expected(args) -> tuple[torch.Tensor, float]:
    Q = args["Q"].clone()
    td = reference_update(Q, *[args[k] for k in CALL[1:]])
    return Q, float(td)


def _variant(args, *, bootstrap="a_next", use_done=True, use_alpha=True, sign=1.0, discount_reward=False):
    """The update written out with one thing changeable (float64): (Q after, TD error)."""
    Q = args["Q"].to(FLOAT64).clone()
    s, a, r, s_next, a_next, done, alpha, gamma = (args[k] for k in CALL[1:])
    future = {"a_next": Q[s_next, a_next], "max_next": Q[s_next].max(), "same_action": Q[s_next, a],
              "current": Q[s, a_next]}[bootstrap]
    target = gamma * (r + future) if discount_reward else r + gamma * future
    if done and use_done:
        target = r
    td = float(target - Q[s, a])
    Q[s, a] = Q[s, a] + sign * (alpha if use_alpha else 1.0) * td
    return Q, td


def _table_mistakes(args) -> dict[str, object]:
    mistakes = {
        "the maximum over Q[s_next] (that is Q-learning): " + HINT_ON_POLICY:
            lambda: _variant(args, bootstrap="max_next")[0],
        "Q[s_next, a] (the action just taken) instead of Q[s_next, a_next]": lambda: _variant(args, bootstrap="same_action")[0],
        "Q[s, a_next] (the current state) instead of Q[s_next, a_next]": lambda: _variant(args, bootstrap="current")[0],
        "Q[s, a] set to the target (alpha ignored): " + HINT_UPDATE: lambda: _variant(args, use_alpha=False)[0],
        "gamma applied to the reward too: target = r + gamma * Q[s_next, a_next]":
            lambda: _variant(args, discount_reward=True)[0],
        "the TD error subtracted: Q[s, a] += alpha * (target - Q[s, a])": lambda: _variant(args, sign=-1.0)[0],
        "Q unchanged: " + HINT_IN_PLACE: lambda: args["Q"].to(FLOAT64),
    }
    if args["done"]:
        mistakes["the next state's value bootstrapped although done is True: " + HINT_TERMINAL] = (
            lambda: _variant(args, use_done=False)[0])
        mistakes["the next state's maximum bootstrapped although done is True (and max is Q-learning): " + HINT_TERMINAL] = (
            lambda: _variant(args, use_done=False, bootstrap="max_next")[0])
    else:
        as_terminal = {**args, "done": True}
        mistakes["a terminal update (target = r alone) although done is False"] = lambda: _variant(as_terminal)[0]
    return mistakes


def _td_mistakes(args) -> dict[str, float]:
    mistakes = {
        "the TD error of a target bootstrapped from max Q[s_next] (Q-learning): " + HINT_ON_POLICY:
            _variant(args, bootstrap="max_next")[1],
        "the TD error of a target with gamma applied to the reward too": _variant(args, discount_reward=True)[1],
    }
    if args["done"]:
        mistakes["the TD error of a target bootstrapped from the next state although done is True: " + HINT_TERMINAL] = (
            _variant(args, use_done=False)[1])
    return mistakes


SUITE = TableSuite(EXERCISE, N_STATES, N_ACTIONS, _case, _expected, _table_mistakes, _td_mistakes,
                   hint_update=HINT_UPDATE, hint_terminal=HINT_TERMINAL, hint_td=HINT_TD, hint_only=HINT_ONLY)


def test_update(student, rng, device, exercise):
    SUITE.check_update(student, rng, device, exercise)


def test_terminal(student, rng, device, exercise):
    SUITE.check_terminal(student, rng, device, exercise)


def test_td_error(student, rng, device, exercise):
    SUITE.check_td_error(student, rng, device, exercise)


def test_only_entry_changes(student, rng, device, exercise):
    SUITE.check_only_entry_changes(student, rng, device, exercise)


def test_in_place(student, rng, device, exercise):
    SUITE.check_in_place(student, rng, device, exercise)


# ------------------------------------------------------------------------------------------ training

class _Cliff:
    """The grader's own CliffWalking: P[s][a] = (s_next, reward, terminated), deterministic."""

    def __init__(self) -> None:
        import gymnasium as gym

        env = gym.make(ENV)
        model = env.unwrapped.P
        self.n_states, self.n_actions = int(env.observation_space.n), int(env.action_space.n)
        self.P = {s: {a: (int(model[s][a][0][1]), float(model[s][a][0][2]), bool(model[s][a][0][3]))
                      for a in range(self.n_actions)} for s in range(self.n_states)}
        env.close()

    def greedy_reaches_goal(self, Q: torch.Tensor) -> bool:
        """Greedy actions (argmax: the lowest index among ties) from the start reach the goal."""
        s = START
        for _ in range(self.n_states):  # a path that reaches the goal visits no state twice
            s, _, terminated = self.P[s][int(Q[s].argmax())]
            if terminated:
                return True
        return False


def _alpha(episode: int) -> float:
    return [alpha for first, alpha in TRAIN_ALPHAS if first <= episode][-1]


def _check_transitions(rows: list[list[float]], cliff: _Cliff) -> list[float]:
    """Every transition is a CliffWalking step, the episodes chain up on-policy (each a_next is the
    next action taken) and there are EPISODES of them. Returns each transition's step size."""
    disturbed = "the training loop in the worker was disturbed (sarsa_update must only change Q)"
    expected_state, expected_action, steps, episodes, alphas = START, None, 0, 0, []
    for k, row in enumerate(rows):
        s, a, r, s_next, a_next, done = row
        valid = all(v == int(v) for v in (s, a, s_next, a_next)) and 0 <= s < cliff.n_states and \
            0 <= a < cliff.n_actions and 0 <= a_next < cliff.n_actions and done in (0.0, 1.0)
        expect(valid, f"training transition {k} is not a (s, a, r, s_next, a_next, done) row: {disturbed}")
        expect(int(s) == expected_state and (expected_action is None or int(a) == expected_action),
               f"training transition {k} does not continue the previous one: {disturbed}")
        expect(cliff.P[int(s)][int(a)] == (int(s_next), r, bool(done)),
               f"training transition {k} is not what CliffWalking does: {disturbed}")
        alphas.append(_alpha(episodes))
        steps += 1
        if done or steps == MAX_STEPS:
            episodes, steps, expected_state, expected_action = episodes + 1, 0, START, None
        else:
            expected_state, expected_action = int(s_next), int(a_next)
    expect((episodes == EPISODES and steps == 0) or len(rows) == MAX_TOTAL_STEPS,
           f"the training run returned {len(rows)} transitions that do not make up {EPISODES} episodes: {disturbed}")
    return alphas


def _replay(rows, alphas, cliff: _Cliff) -> torch.Tensor:
    Q = torch.zeros((cliff.n_states, cliff.n_actions), dtype=FLOAT64)
    for (s, a, r, s_next, a_next, done), alpha in zip(rows, alphas):
        reference_update(Q, int(s), int(a), float(r), int(s_next), int(a_next), bool(done), alpha, TRAIN_GAMMA)
    return Q


def _replay_mistake(rows, alphas, cliff: _Cliff, *, bootstrap="a_next", use_done=True, use_alpha=True):
    """A known mistake replayed over the same transitions (plain Python floats, fast)."""
    Q = [[0.0] * cliff.n_actions for _ in range(cliff.n_states)]
    for (s, a, r, s_next, a_next, done), alpha in zip(rows, alphas):
        s, a, s_next, a_next = int(s), int(a), int(s_next), int(a_next)
        future = Q[s_next][a_next] if bootstrap == "a_next" else max(Q[s_next])
        target = r if (done and use_done) else r + TRAIN_GAMMA * future
        Q[s][a] += (alpha if use_alpha else 1.0) * (target - Q[s][a])
    return torch.tensor(Q, dtype=FLOAT64)


def test_training(student, rng, exercise):
    cliff = _Cliff()
    for attempt in range(1, TRAINING_ATTEMPTS + 1):
        result = student.run(EXERCISE, {
            "env": ENV, "env_kwargs": {}, "episodes": EPISODES, "max_steps": MAX_STEPS, "gamma": TRAIN_GAMMA,
            "epsilon": TRAIN_EPSILON, "seed": seed(rng), "alphas": [list(p) for p in TRAIN_ALPHAS],
            "max_total_steps": MAX_TOTAL_STEPS}, how="episode_loop", device="cpu", timeout=exercise.timeout_s)
        table = expect_like(result.get("Q"), shape=(cliff.n_states, cliff.n_actions), dtype=FLOAT64, device="cpu",
                            quantity="Q after training")
        transitions = result.get("transitions")
        expect(type(transitions) is torch.Tensor and transitions.dim() == 2 and transitions.shape[1] == 6,
               "the training run did not return its transitions as an (N, 6) tensor: the training loop in the worker "
               "was disturbed (sarsa_update must only change Q)")
        rows = transitions.to(FLOAT64).tolist()
        alphas = _check_transitions(rows, cliff)
        expect_close(table, _replay(rows, alphas, cliff),
                     quantity=f"Q after training on CliffWalking ({len(rows)} updates, compared with a correct update "
                              "replayed over the same transitions)",
                     exercise=exercise, hint=HINT_UPDATE, mistakes={
                         "the maximum over Q[s_next] (that is Q-learning): " + HINT_ON_POLICY:
                             lambda: _replay_mistake(rows, alphas, cliff, bootstrap="max_next"),
                         "the next state's value bootstrapped on terminal steps: " + HINT_TERMINAL:
                             lambda: _replay_mistake(rows, alphas, cliff, use_done=False),
                         "Q[s, a] set to the target (alpha ignored)":
                             lambda: _replay_mistake(rows, alphas, cliff, use_alpha=False),
                         "a table that never changed (all zeros): " + HINT_IN_PLACE: torch.zeros_like(table),
                     })
        if cliff.greedy_reaches_goal(table):
            return
    fail(f"the greedy policy of the learned table did not reach the goal in {TRAINING_ATTEMPTS} training runs, "
         "although every table equals what a correct update learns from the same transitions",
         hint="this should essentially never happen to a correct update; please report it to the course staff")
