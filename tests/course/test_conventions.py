"""Calling conventions: the worker's harnesses return data only, and the grader derives every fact.

The harnesses run in-process here (they are plain torch code, the same that runs in the sandbox);
the facts are computed by the conventions declared in the registry.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import reference
from autograder.course.conventions import (EpisodeLoop, Function, GradsInPlace, ModuleTransform, OptimizerState,
                                           RecurrentCell, TableUpdate)
from autograder.course.registry import BY_NAME, EXERCISES
from autograder.worker import harness


def _call(name: str, fn, args: dict[str, Any], how: str | None = None) -> dict[str, Any]:
    exercise = BY_NAME[name]
    convention = exercise.convention(how)
    raw = harness.HARNESSES[convention.harness](fn, args, convention.spec(exercise.parameters()))
    _assert_data_only(raw)
    return convention.facts(raw, args)


def _assert_data_only(value: Any, where: str = "reply") -> None:
    """A harness reply holds values and raw attributes, never a verdict (a bool at the top)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(item) is not bool, f"{where}[{key!r}] is a bool computed in the worker"
            if isinstance(item, list):
                for entry in item:
                    assert type(entry) is not bool, f"{where}[{key!r}] holds bools computed in the worker"


def test_every_exercise_declares_a_convention_with_a_harness():
    for exercise in EXERCISES:
        for convention in (exercise.call, *exercise.also):
            assert convention.harness == "function" or convention.harness in harness.HARNESSES, exercise.name
        if isinstance(exercise.call, Function):
            assert set(exercise.call.grad_wrt) <= set(exercise.parameters()), exercise.name


def _clip_args():
    grads = [torch.tensor([3.0, 4.0], dtype=torch.float64), torch.tensor([[0.0], [12.0]], dtype=torch.float64)]
    return {"params": [g * 0 for g in grads], "steps": [grads, [None, grads[1]]], "theta": 1.0}


def test_grads_in_place_same_objects_is_a_grader_fact():
    good = _call("clip_grad", reference.clip_grad, _clip_args())
    assert good["same_grad_objects"] == [True, True]
    assert good["returned"][0] == pytest.approx(13.0)

    def replaces(params, theta):
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * 0.5  # a new tensor: not in place
        return 1.0

    assert _call("clip_grad", replaces, _clip_args())["same_grad_objects"] == [False, False]


def _adam_args():
    params = [torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64)]
    steps = [[torch.tensor([0.5, -3.0], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)]] * 2
    return {"params": params, "steps": steps, "lr": 0.1}


def test_optimizer_state_facts_are_computed_by_the_grader():
    good = _call("adam_step", reference.adam_step, _adam_args())
    assert (good["same_objects"], good["history_free"], good["grads_kept"]) == (True, True, True)
    assert len(good["params"]) == 2 and len(good["states"]) == 2 and len(good["states"][0]) == 2

    def rebinds_and_records(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):
        for i, p in enumerate(params):
            states[i] = (p.grad.clone(), p.grad.clone())  # new state objects
            p.data = p.data - lr * p.grad
            p.grad.zero_()  # gradients must be kept

    bad = _call("adam_step", rebinds_and_records, _adam_args())
    assert (bad["same_objects"], bad["grads_kept"]) == (False, False)

    def with_history(params, states, lr, t, beta1=0.9, beta2=0.999, eps=1e-8):
        for p, (v, s) in zip(params, states):
            v.add_(p * 0 + p.grad)  # v now records autograd history

    assert _call("adam_step", with_history, _adam_args())["history_free"] is False


def test_optimizer_state_single_tensor_layout():
    convention = OptimizerState(state_layout="v", states="velocities", step=None)
    spec = convention.spec(["params", "velocities", "lr", "momentum"])

    def sgd_momentum_step(params, velocities, lr, momentum):
        with torch.no_grad():
            for p, v in zip(params, velocities):
                v.mul_(momentum).add_(p.grad)
                p.sub_(lr * v)

    args = {**_adam_args(), "momentum": 0.9}
    raw = harness.optimizer_state(sgd_momentum_step, args, spec)
    facts = convention.facts(raw, args)
    assert (facts["same_objects"], facts["history_free"], facts["grads_kept"]) == (True, True, True)
    torch.testing.assert_close(raw["params"][0][0], torch.tensor([0.95, -1.7], dtype=torch.float64))


def test_table_update_same_object_is_a_grader_fact():
    args = {"Q": torch.zeros(2, 2, dtype=torch.float64), "s": 0, "a": 1, "r": 1.0, "s_next": 1, "done": False,
            "alpha": 0.5, "gamma": 0.9}
    good = _call("q_learning_update", reference.q_learning_update, args)
    assert good["same_object"] is True and good["returned"] == pytest.approx(1.0)
    torch.testing.assert_close(good["Q_after"], torch.tensor([[0.0, 0.5], [0.0, 0.0]], dtype=torch.float64))

    def replaces_storage(Q, s, a, r, s_next, done, alpha, gamma):
        Q.set_(Q.clone())
        Q[s, a] += 1.0
        return 1.0

    assert _call("q_learning_update", replaces_storage, args)["same_object"] is False


def test_episode_loop_on_policy_passes_the_next_action():
    seen = []

    def sarsa_update(Q, s, a, r, s_next, a_next, done, alpha, gamma):
        seen.append(a_next)
        target = r if done else r + gamma * Q[s_next, a_next].item()
        Q[s, a] += alpha * (target - Q[s, a].item())
        return target

    convention = EpisodeLoop(table="Q", next_action="a_next")
    spec = convention.spec(["Q", "s", "a", "r", "s_next", "a_next", "done", "alpha", "gamma"])
    raw = harness.episode_loop(sarsa_update, {"env": "FrozenLake-v1", "env_kwargs": {"desc": ["SF", "FG"],
                                              "is_slippery": False}, "episodes": 3, "max_steps": 10,
                                              "alphas": [[0, 0.5]], "gamma": 0.9, "epsilon": 0.5, "seed": 1}, spec)
    assert raw["transitions"].shape[1] == 6 and len(seen) == raw["transitions"].shape[0] > 0
    assert raw["transitions"][:, 4].tolist() == [float(a) for a in seen]


def test_function_tuple_outputs_and_dict_inputs_get_gradients():
    def cell(x, state, params):
        h, c = state
        c_next = c * torch.sigmoid(x @ params["W"])
        return torch.tanh(c_next) * h, c_next

    args = {"x": torch.randn(2, 3, dtype=torch.float64), "state": (torch.randn(2, 4, dtype=torch.float64),
                                                                   torch.randn(2, 4, dtype=torch.float64)),
            "params": {"W": torch.randn(3, 4, dtype=torch.float64)}}
    upstream = [torch.ones(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64)]
    raw = harness.function(cell, args, ["x", "state", "params"], upstream, 1)
    grads = raw["calls"][0]["grads"]
    assert raw["calls"][0]["grad_error"] is None
    assert set(grads) == {"x", "state[0]", "state[1]", "params.W"}
    assert grads["params.W"].shape == (3, 4)


def test_function_mutated_buffers_are_read_back_with_their_history():
    def normalise(X, running_mean):
        running_mean.mul_(0.9).add_(0.1 * X.mean(0))  # records history: X requires grad
        return X - X.mean(0)

    args = {"X": torch.randn(4, 3, dtype=torch.float64), "running_mean": torch.zeros(3, dtype=torch.float64)}
    raw = harness.function(normalise, args, ["X"], torch.ones(4, 3, dtype=torch.float64), 1)
    torch.testing.assert_close(raw["inputs_after"]["running_mean"], 0.1 * args["X"].mean(0))
    assert raw["input_facts"]["running_mean"]["grad_fn"] is not None and raw["input_facts"]["running_mean"]["writes"] >= 1


def test_student_text_becomes_the_graders_words():
    """Why gradients could not be taken (recurrent cells) and what the forward pass raised (module
    transforms) are the student's text in a harness's reply: the facts keep only their category."""
    cell = RecurrentCell()
    assert cell.facts({"grad_error": "HIDDENLEAK 0.8672"}, {})["grad_error"] == "gradients could not be computed"
    assert cell.facts({"grad_error": "step 2 returned a Leak_0p8672, not a tensor, so no gradient can flow"},
                      {})["grad_error"] == "the output is not a tensor, so no gradient can flow"
    assert cell.facts({"grad_error": None}, {})["grad_error"] is None
    module = ModuleTransform()
    assert module.facts({"forward_error": "ValueError: HIDDENLEAK 0.8672"}, {})["forward_error"] == "ValueError"
    assert module.facts({"forward_error": "Leak_0p8672: 0.8672"}, {})["forward_error"] == \
        "an exception of the notebook's own class"
    assert module.facts({"forward_error": None}, {})["forward_error"] is None


def test_recurrent_cell_detached_output_is_said_in_the_graders_words():
    def detached(x, h, params):
        return (x @ params["W_xh"] + h @ params["W_hh"]).detach()

    args = {"xs": torch.randn(2, 3, 4, dtype=torch.float64), "state": [torch.randn(3, 5, dtype=torch.float64)],
            "params": {"W_xh": torch.randn(4, 5, dtype=torch.float64), "W_hh": torch.randn(5, 5, dtype=torch.float64)},
            "upstream": [torch.ones(2, 3, 5, dtype=torch.float64)]}
    facts = _call("gru_cell", detached, args, how="recurrent_cell")
    assert facts["grads"] is None and facts["grad_error"].startswith("the output does not require grad")
