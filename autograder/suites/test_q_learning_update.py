"""Hidden tests of ``q_learning_update(Q, s, a, r, s_next, done, alpha, gamma)`` (docs/exercises.md §8):
one tabular Q-learning update of ``Q[s, a]``, in place, returning the TD error.

Single updates use the exercise's ``TableUpdate`` convention; ``test_training`` runs the grader's
epsilon-greedy loop on FrozenLake in the worker (its ``EpisodeLoop`` convention), then checks here every
returned transition against the grader's own copy of the environment, replays the transitions
through the reference update from a zero table, and follows the greedy policy of the learned table.

Which test owns what: ``update`` the non-terminal target (the max over Q[s_next]), ``terminal`` no
bootstrap when done, ``td_error`` the returned value, ``only_entry_changes`` nothing but Q[s, a],
``in_place`` the caller's table, ``training`` the behaviour over a whole training run. The checks of
single updates are shared with ``sarsa_update`` (``autograder/suites/_tabular.py``).
"""

from __future__ import annotations

import torch

from autograder.course.hints import (Q_LEARNING_UPDATE_TERMINAL as HINT_TERMINAL,
                                     Q_LEARNING_UPDATE_UPDATE as HINT_UPDATE)
from autograder.grading.compare import expect, expect_close, expect_like, fail
from autograder.suites._common import FLOAT64, integer, normal, number, seed
from autograder.suites._tabular import HINT_IN_PLACE, TableSuite
from reference import q_learning_update as reference_update

EXERCISE = "q_learning_update"

#: Table size of the single-update tests (states != actions, so swapped indices show).
N_STATES, N_ACTIONS = 7, 4
ALPHA_RANGE = (0.1, 0.9)
GAMMA_RANGE = (0.5, 0.99)
REWARD_RANGE = (-2.0, 2.0)
#: The next state's best value in the terminal test: large, so that bootstrapping from it shows.
TERMINAL_NEXT_VALUE = 10.0

#: The training run: FrozenLake 4x4 (is_slippery=False) maps from gymnasium's generate_random_map,
#: kept only when a uniformly random walk reaches the goal with probability >= MIN_WALK_SUCCESS per
#: episode (so that exploration finds the goal early; about half the maps qualify), then EPISODES
#: episodes of at most MAX_STEPS steps (about 1 600 updates). Measured with a correct update on
#: 100 000 such runs (an exact replica of the harness loop): the greedy policy missed the goal 3
#: times. A run that misses it with a table equal to the replay is unlucky, not wrong, and is
#: repeated on a new map, up to TRAINING_ATTEMPTS runs (a correct update then fails ~1e-13).
MAP_SIZE = 4
MIN_WALK_SUCCESS = 0.05
EPISODES = 200
MAX_STEPS = 100
TRAIN_ALPHA = 0.5
TRAIN_GAMMA = 0.95
TRAIN_EPSILON = 0.2
TRAINING_ATTEMPTS = 3

HINT_TD = ("return the TD error target - Q[s, a], computed with the value of Q[s, a] before the update, as a Python "
           "float (e.g. float(td_error) or td_error.item())")
HINT_ONLY = "change only Q[s, a]: index the single entry (Q[s, a] += ...), not the row Q[s] or the column Q[:, a]"


def _case(rng, done: bool, dtype=FLOAT64, self_loop: bool = False) -> dict:
    s = integer(rng, 0, N_STATES)
    s_next = s if self_loop else (s + integer(rng, 1, N_STATES)) % N_STATES
    Q = normal(rng, N_STATES, N_ACTIONS)
    if done:
        Q[s_next, integer(rng, 0, N_ACTIONS)] = TERMINAL_NEXT_VALUE
    a = integer(rng, 0, N_ACTIONS)
    if not done and int(Q[s_next].argmax()) == a:
        # The action taken is never the best next one: bootstrapping from Q[s_next, a] (SARSA-like)
        # instead of the max then differs on every seed, not on one in N_ACTIONS.
        Q[s_next, (a + 1) % N_ACTIONS] = Q[s_next, a] + 1.0
    return {"Q": Q.to(dtype), "s": s, "a": a, "r": number(rng, *REWARD_RANGE),
            "s_next": s_next, "done": done, "alpha": number(rng, *ALPHA_RANGE), "gamma": number(rng, *GAMMA_RANGE)}


def _expected(args) -> tuple[torch.Tensor, float]:
    Q = args["Q"].clone()
    td = reference_update(Q, args["s"], args["a"], args["r"], args["s_next"], args["done"], args["alpha"], args["gamma"])
    return Q, float(td)


def _variant(args, *, bootstrap="max_next", use_done=True, use_alpha=True, sign=1.0, discount_reward=False):
    """The update written out with one thing changeable (float64): (Q after, TD error)."""
    Q = args["Q"].to(FLOAT64).clone()
    s, a, r, s_next, done, alpha, gamma = (args[k] for k in ("s", "a", "r", "s_next", "done", "alpha", "gamma"))
    future = {"max_next": Q[s_next].max(), "same_action": Q[s_next, a], "max_current": Q[s].max()}[bootstrap]
    target = gamma * (r + future) if discount_reward else r + gamma * future
    if done and use_done:
        target = r
    td = float(target - Q[s, a])
    Q[s, a] = Q[s, a] + sign * (alpha if use_alpha else 1.0) * td
    return Q, td


def _table_mistakes(args) -> dict[str, object]:
    mistakes = {
        "Q[s, a] set to the target (alpha ignored): " + HINT_UPDATE: lambda: _variant(args, use_alpha=False)[0],
        "the maximum over Q[s] (the current state) instead of Q[s_next]": lambda: _variant(args, bootstrap="max_current")[0],
        "Q[s_next, a] instead of the maximum over the next state's actions, Q[s_next].max()":
            lambda: _variant(args, bootstrap="same_action")[0],
        "gamma applied to the reward too: target = r + gamma * Q[s_next].max()":
            lambda: _variant(args, discount_reward=True)[0],
        "the TD error subtracted: Q[s, a] += alpha * (target - Q[s, a])": lambda: _variant(args, sign=-1.0)[0],
        "Q unchanged: " + HINT_IN_PLACE: lambda: args["Q"].to(FLOAT64),
    }
    if args["done"]:
        mistakes["the next state's value bootstrapped although done is True: " + HINT_TERMINAL] = (
            lambda: _variant(args, use_done=False)[0])
    else:
        as_terminal = {**args, "done": True}
        mistakes["a terminal update (target = r alone) although done is False"] = lambda: _variant(as_terminal)[0]
    return mistakes


def _td_mistakes(args) -> dict[str, float]:
    """The TD error under the table mistakes that change the target."""
    mistakes = {
        "the TD error of a target bootstrapped from max Q[s] (the current state) instead of Q[s_next]":
            _variant(args, bootstrap="max_current")[1],
        "the TD error of a target bootstrapped from Q[s_next, a] instead of Q[s_next].max()":
            _variant(args, bootstrap="same_action")[1],
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

class _Lake:
    """The grader's own FrozenLake (is_slippery=False): P[s][a] = (s_next, reward, terminated)."""

    def __init__(self, desc: list[str]) -> None:
        import gymnasium as gym

        env = gym.make("FrozenLake-v1", desc=desc, is_slippery=False)
        lake = env.unwrapped
        self.n_states, self.n_actions = int(env.observation_space.n), int(env.action_space.n)
        self.start = int(lake.initial_state_distrib.argmax())
        self.P = {s: {a: tuple(lake.P[s][a][0][1:]) for a in range(self.n_actions)} for s in range(self.n_states)}
        env.close()

    def walk_success(self, horizon: int) -> float:
        """Probability that uniformly random actions reach the goal within ``horizon`` steps."""
        dist = {self.start: 1.0}
        total = 0.0
        for _ in range(horizon):
            following: dict[int, float] = {}
            for s, p in dist.items():
                for a in range(self.n_actions):
                    s_next, r, terminated = self.P[s][a]
                    q = p / self.n_actions
                    if terminated:
                        total += q if r > 0 else 0.0
                    else:
                        following[s_next] = following.get(s_next, 0.0) + q
            dist = following
        return total

    def greedy_reaches_goal(self, Q: torch.Tensor) -> bool:
        s = self.start
        for _ in range(self.n_states):  # a path that reaches the goal visits no state twice
            s, r, terminated = self.P[s][int(Q[s].argmax())]
            if terminated:
                return r > 0
        return False


def _lake(rng) -> tuple[list[str], _Lake]:
    from gymnasium.envs.toy_text.frozen_lake import generate_random_map

    while True:
        desc = generate_random_map(size=MAP_SIZE, seed=seed(rng))
        lake = _Lake(desc)
        if lake.walk_success(MAX_STEPS) >= MIN_WALK_SUCCESS:
            return desc, lake


def _check_transitions(rows: list[list[float]], lake: _Lake) -> None:
    """Every transition is a FrozenLake step, episodes chain up, and there are EPISODES of them."""
    disturbed = "the training loop in the worker was disturbed (q_learning_update must only change Q)"
    expected_state, steps, episodes = lake.start, 0, 0
    for k, row in enumerate(rows):
        s, a, r, s_next, done = row
        valid = (s == int(s) and s_next == int(s_next) and a == int(a) and 0 <= s < lake.n_states
                 and 0 <= a < lake.n_actions and done in (0.0, 1.0))
        expect(valid, f"training transition {k} is not a (state, action, reward, next state, done) row: {disturbed}")
        expect(int(s) == expected_state, f"training transition {k} starts in another state than the previous one "
               f"ended in: {disturbed}")
        expect(lake.P[int(s)][int(a)] == (int(s_next), r, bool(done)),
               f"training transition {k} is not what FrozenLake does: {disturbed}")
        steps += 1
        if done or steps == MAX_STEPS:
            episodes, steps, expected_state = episodes + 1, 0, lake.start
        else:
            expected_state = int(s_next)
    expect(episodes == EPISODES and steps == 0,
           f"the training run returned {len(rows)} transitions that do not make up {EPISODES} episodes: {disturbed}")


def _replay(rows: list[list[float]], lake: _Lake, update) -> torch.Tensor:
    Q = torch.zeros((lake.n_states, lake.n_actions), dtype=FLOAT64)
    for s, a, r, s_next, done in rows:
        update(Q, int(s), int(a), float(r), int(s_next), bool(done), TRAIN_ALPHA, TRAIN_GAMMA)
    return Q


def _replay_mistake(rows, lake, **change):
    """A known mistake replayed over the same transitions (plain Python floats, fast)."""
    Q = [[0.0] * lake.n_actions for _ in range(lake.n_states)]
    for s, a, r, s_next, done in rows:
        s, a, s_next = int(s), int(a), int(s_next)
        target = r + TRAIN_GAMMA * max(Q[s_next])
        if done and change.get("use_done", True):
            target = r
        Q[s][a] += (TRAIN_ALPHA if change.get("use_alpha", True) else 1.0) * (target - Q[s][a])
    return torch.tensor(Q, dtype=FLOAT64)


def test_training(student, rng, exercise):
    for attempt in range(1, TRAINING_ATTEMPTS + 1):
        desc, lake = _lake(rng)
        result = student.run(EXERCISE, {
            "env": "FrozenLake-v1", "env_kwargs": {"desc": desc, "is_slippery": False}, "episodes": EPISODES,
            "max_steps": MAX_STEPS, "alphas": [[0, TRAIN_ALPHA]], "gamma": TRAIN_GAMMA, "epsilon": TRAIN_EPSILON,
            "seed": seed(rng)}, how="episode_loop", device="cpu", timeout=exercise.timeout_s)
        table = expect_like(result.get("Q"), shape=(lake.n_states, lake.n_actions), dtype=FLOAT64, device="cpu",
                            quantity="Q after training")
        transitions = result.get("transitions")
        expect(type(transitions) is torch.Tensor and transitions.dim() == 2 and transitions.shape[1] == 6,
               "the training run did not return its transitions as an (N, 6) tensor: the training loop in the worker "
               "was disturbed (q_learning_update must only change Q)")
        rows = transitions.to(FLOAT64)[:, [0, 1, 2, 3, 5]].tolist()  # [s, a, r, s_next, done]: no next action
        _check_transitions(rows, lake)
        expect_close(table, _replay(rows, lake, reference_update),
                     quantity=f"Q after training on FrozenLake ({len(rows)} updates, compared with a correct update "
                              "replayed over the same transitions)",
                     exercise=exercise, hint=HINT_UPDATE, mistakes={
                         "the next state's value bootstrapped on terminal steps: " + HINT_TERMINAL:
                             lambda: _replay_mistake(rows, lake, use_done=False),
                         "Q[s, a] set to the target (alpha ignored)": lambda: _replay_mistake(rows, lake, use_alpha=False),
                         "a table that never changed (all zeros): " + HINT_IN_PLACE: torch.zeros_like(table),
                     })
        if lake.greedy_reaches_goal(table):
            return
    fail(f"the greedy policy of the learned table did not reach the goal in {TRAINING_ATTEMPTS} training runs, "
         "although every table equals what a correct update learns from the same transitions",
         hint="this should essentially never happen to a correct update; please report it to the course staff")
