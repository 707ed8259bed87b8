"""Public self-checks: the registry's visible examples, run in the student's own kernel.

Nothing here counts. The graded tests are hidden and run in the grader's sandbox; this module only
gives quick, friendly feedback while the student works::

    from autograder.public import check
    check(softmax)      # ✓ softmax: rows sum to one ...

Each ``PublicCase`` of the registry is turned into a call (literals become tensors, float64 unless
the case's ``dtypes`` says otherwise), and every result is compared as
``torch.testing.assert_close`` does: type, shape, dtype and device first, then values within the
exercise's tolerance, ``nan`` never equal. The first mismatch raises an ``AssertionError`` naming
the exercise, the case and the quantity, followed by ``assert_close``'s own explanation.

Importable with only torch installed (and the standard library).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from autograder.course.registry import BY_NAME, Exercise, PublicCase

__all__ = ["check", "hidden_tests_run_by_the_grader"]

#: (quantity, actual, expected): one comparison after a call, e.g. ("the output", Y, Y_expected).
Comparison = tuple[str, Any, Any]


@dataclass
class _Trial:
    """One public case made concrete: how to call the function and what to compare afterwards."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    comparisons: Callable[[Any], list[Comparison]]  # the call's result -> what to compare
    earlier_calls: int = 0  # calls made before the compared one (steps of an optimizer), same args
    before_call: Callable[[int], None] | None = None  # run before call i (sets that step's gradients)


def check(fn: Callable[..., Any], name: str | None = None) -> None:
    """Run the public examples of exercise ``name`` (default: ``fn.__name__``) against ``fn``.

    Prints one line per passing case; raises ``AssertionError`` on the first mismatch. Errors
    raised by ``fn`` itself (``NotImplementedError`` included) propagate unchanged, with a note
    saying which case was being checked.
    """
    exercise = _exercise(fn, name)
    for case in exercise.public_cases:
        trial = _TRIAL_BUILDERS.get(exercise.name, _function_trial)(exercise, case)
        try:
            for call in range(trial.earlier_calls + 1):
                if trial.before_call is not None:
                    trial.before_call(call)
                result = fn(*trial.args, **trial.kwargs)
        except NotImplementedError:
            print(f"✗ {exercise.name}: not implemented yet (replace `raise NotImplementedError()` with your code)")
            raise
        except Exception as error:  # the student's own error: keep its traceback, say which case
            print(f"✗ {exercise.name}: {case.description}: raised {type(error).__name__}: {error}")
            error.add_note(f"(raised by {exercise.name} in the public check '{case.description}')")
            raise
        for quantity, actual, expected in trial.comparisons(result):
            _compare(exercise, case, quantity, actual, expected)
        print(f"✓ {exercise.name}: {case.description}")
    count = len(exercise.public_cases)
    passed = "The public check" if count == 1 else f"All {count} public checks"
    covered = ", ".join(test.removeprefix("test_").replace("_", " ") for test in exercise.tests)
    print(f"{passed} of {exercise.name} passed. The graded hidden tests go further ({covered}).")


def hidden_tests_run_by_the_grader(name: str) -> None:
    """Say where the hidden tests of ``name`` run. Nothing is tested in this kernel."""
    exercise = BY_NAME[name]
    print(
        f"The hidden tests for `{name}` run in the grader's sandbox, not in this kernel "
        f"(worth {exercise.points} points)."
    )


# -- building calls ---------------------------------------------------------------------------


def _exercise(fn: Callable[..., Any], name: str | None) -> Exercise:
    key = name if name is not None else getattr(fn, "__name__", None)
    if key not in BY_NAME:
        known = ", ".join(BY_NAME)
        raise ValueError(
            f"check(): no exercise called {key!r} (known: {known}). "
            "Keep the function's name from the notebook, or call check(fn, name='...')."
        )
    return BY_NAME[key]


def _parameter_names(exercise: Exercise) -> list[str]:
    return [part.split("=")[0].strip() for part in exercise.signature.split(",")]


def _literal(value: Any, dtype: str | None = None) -> Any:
    """Nested lists become tensors (float64 unless ``dtype`` names another), also inside tuples and
    dicts (an LSTM state, a dict of parameters); scalars stay as they are."""
    if isinstance(value, list):
        return torch.tensor(value, dtype=getattr(torch, dtype or "float64"))
    if isinstance(value, tuple):
        return tuple(_literal(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _literal(v, dtype) for k, v in value.items()}
    return value


def _tensors(value: Any, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors inside an argument, by a readable name (``params['W_xz']``, ``state[0]``)."""
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, tuple) else ()
    out: dict[str, torch.Tensor] = {}
    for key, inner in items:
        out.update(_tensors(inner, f"{prefix}[{key!r}]"))
    return out


def _arguments(exercise: Exercise, values: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional arguments in signature order until the first one a case leaves out, keywords after."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    gap = False
    for parameter in _parameter_names(exercise):
        if parameter not in values:
            gap = True
        elif gap:
            kwargs[parameter] = values[parameter]
        else:
            args.append(values[parameter])
    return tuple(args), kwargs


def _function_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """A function: compare its output, and check that no input tensor changed.

    An ``expected`` dict holds the output under ``"output"`` and, under an input's name, what that
    input must hold after the call (an input the exercise updates in place); every other input
    must be left as it was.
    """
    values = {key: _literal(value, case.dtypes.get(key)) for key, value in case.args.items()}
    inputs = {name: tensor for key, value in values.items() for name, tensor in _tensors(value, key).items()}
    originals = {name: tensor.clone() for name, tensor in inputs.items()}
    args, kwargs = _arguments(exercise, values)
    in_place = dict(case.expected) if isinstance(case.expected, dict) else {"output": case.expected}
    expected = _literal(in_place.pop("output"))
    updated = {key: _literal(value, case.dtypes.get(key)) for key, value in in_place.items()}

    def comparisons(result: Any) -> list[Comparison]:
        out: list[Comparison] = [("the output", result, expected)]
        for key, after in updated.items():
            out.append((f"`{key}` after the call (it is updated in place)", values[key], after))
        for name, before in originals.items():
            if name not in updated:
                out.append((f"the input `{name}`, which changed (functions must not modify their inputs)", inputs[name], before))
        return out

    return _Trial(args, kwargs, comparisons)


def _clip_grad_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """``{grads: [...], theta}``: one parameter per gradient, ``.grad`` set, clipped in place."""
    grads = [_literal(grad) for grad in case.args["grads"]]
    params = [torch.zeros_like(grad, requires_grad=True) for grad in grads]
    for param, grad in zip(params, grads):
        param.grad = grad.clone()
    expected_grads = [_literal(grad) for grad in case.expected["grads"]]

    def comparisons(result: Any) -> list[Comparison]:
        out: list[Comparison] = [("the returned norm (before clipping)", result, float(case.expected["norm"]))]
        for i, (param, grad) in enumerate(zip(params, expected_grads)):
            out.append((f"`params[{i}].grad` after the call", param.grad, grad))
        return out

    return _Trial((params, case.args["theta"]), {}, comparisons)


def _adam_step_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """``{params, grads, lr, t, ...}``: parameters with ``.grad`` set and zero states, updated in place."""
    params = [_literal(param).requires_grad_() for param in case.args["params"]]
    for param, grad in zip(params, case.args["grads"]):
        param.grad = _literal(grad)
    states = [(torch.zeros_like(param), torch.zeros_like(param)) for param in params]
    options = {key: value for key, value in case.args.items() if key not in ("params", "grads", "lr", "t")}
    expected_params = [_literal(param) for param in case.expected["params"]]

    def comparisons(result: Any) -> list[Comparison]:
        return [
            (f"`params[{i}]` after the step", param.detach(), expected)
            for i, (param, expected) in enumerate(zip(params, expected_params))
        ]

    return _Trial((params, states, case.args["lr"], case.args["t"]), options, comparisons)


def _q_learning_update_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """``Q`` updated in place; the TD error is returned."""
    values = {key: _literal(value, case.dtypes.get(key)) for key, value in case.args.items()}
    args, kwargs = _arguments(exercise, values)

    def comparisons(result: Any) -> list[Comparison]:
        return [
            ("the returned TD error", result, float(case.expected["td_error"])),
            ("`Q` after the update", values["Q"], _literal(case.expected["Q"])),
        ]

    return _Trial(args, kwargs, comparisons)


def _value_iteration_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """A pair ``(V, policy)`` is returned: V compared as floats, the policy exactly (int64)."""
    values = {key: _literal(value, case.dtypes.get(key)) for key, value in case.args.items()}
    args, kwargs = _arguments(exercise, values)

    def comparisons(result: Any) -> list[Comparison]:
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise AssertionError(f"{exercise.name} must return a pair (V, policy), but returned {_describe(result)}.")
        V, policy = result
        return [("the returned V", V, _literal(case.expected["V"])),
                ("the returned policy", policy, _literal(case.expected["policy"], "int64"))]

    return _Trial(args, kwargs, comparisons)


def _replace_classifier_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """``{model: a torchvision builder name, num_classes}``: the model built on the ``meta`` device
    (``weights=None``: no download, no memory), transformed, then counted and run on meta inputs."""
    from torchvision import models

    with torch.device("meta"):
        model = getattr(models, case.args["model"])(weights=None)
    expected = case.expected

    def comparisons(result: Any) -> list[Comparison]:
        return _model_comparisons(model, result, expected)

    return _Trial((model, case.args["num_classes"]), {}, comparisons)


def _model_comparisons(model: Any, result: Any, expected: dict[str, Any]) -> list[Comparison]:
    last = model.classifier[-1]
    shape = [getattr(last, "in_features", -1), getattr(last, "out_features", -1)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    X = torch.empty(expected["output_shape"][0], 3, 32, 32, device="meta")
    try:
        output_shape = list(model(X).shape)
    except Exception as error:  # the model no longer fits together: say so as a comparison
        output_shape = [-1]
        print(f"  model(X) failed after the call: {type(error).__name__}: {error}")
    count = lambda n: torch.tensor(float(n), dtype=torch.float64)  # noqa: E731
    return [
        ("whether the model itself is returned (1 = yes)", count(result is model), count(expected["same_model"])),
        ("(in_features, out_features) of model.classifier[-1]", _count_list(shape), _count_list(expected["last"])),
        ("the number of trainable parameters (only the new layer's)", count(trainable), count(expected["trainable"])),
        ("the number of frozen parameters (all the others)", count(frozen), count(expected["frozen"])),
        ("the shape of model(X) for X of shape (2, 3, 32, 32)", _count_list(output_shape),
         _count_list(expected["output_shape"])),
    ]


def _count_list(values: list[int]) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


#: Exercises whose cases are not "call, then compare the output" (in-place updates, models).
def _optimizer_trial(exercise: Exercise, case: PublicCase) -> _Trial:
    """``{params, steps, lr, ...}``: one zero state per parameter, then one call per step of
    gradients (``.grad`` set before each call); parameters and states compared after the last."""
    params = [_literal(param).requires_grad_() for param in case.args["params"]]
    states = [torch.zeros_like(param) for param in params]
    options = {key: value for key, value in case.args.items() if key not in ("params", "steps", "lr")}
    steps = case.args["steps"]
    state_name = _parameter_names(exercise)[1]

    def set_gradients(call: int) -> None:
        for param, grad in zip(params, steps[call]):
            param.grad = _literal(grad)

    def comparisons(result: Any) -> list[Comparison]:
        after = f"after {len(steps)} step{'s' if len(steps) > 1 else ''}"
        out: list[Comparison] = [(f"`params[{i}]` {after}", param.detach(), _literal(want))
                                 for i, (param, want) in enumerate(zip(params, case.expected["params"]))]
        out += [(f"`{state_name}[{i}]` {after}", state, _literal(want))
                for i, (state, want) in enumerate(zip(states, case.expected["states"]))]
        return out

    return _Trial((params, states, case.args["lr"]), options, comparisons, len(steps) - 1, set_gradients)


#: Exercises whose cases are not "call, then compare the output" (in-place updates).
_TRIAL_BUILDERS: dict[str, Callable[[Exercise, PublicCase], _Trial]] = {
    "clip_grad": _clip_grad_trial,
    "adam_step": _adam_step_trial,
    "q_learning_update": _q_learning_update_trial,
    "sarsa_update": _q_learning_update_trial,
    "value_iteration": _value_iteration_trial,
    "replace_classifier": _replace_classifier_trial,
    "sgd_momentum_step": _optimizer_trial,
    "adagrad_step": _optimizer_trial,
    "rmsprop_step": _optimizer_trial,
}


# -- comparing --------------------------------------------------------------------------------


def _compare(exercise: Exercise, case: PublicCase, quantity: str, actual: Any, expected: Any) -> None:
    """``assert_close`` with the exercise's tolerance; a Python float is expected as a float or 0-d tensor."""
    if isinstance(expected, tuple):  # a tuple of tensors, such as an LSTM's (h', c')
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            print(f"✗ {exercise.name}: {case.description}")
            raise AssertionError(f"{exercise.name}: public check '{case.description}' failed on {quantity}: expected a "
                                 f"tuple of {len(expected)} tensors, got {_describe(actual)}.") from None
        for index, (part, wanted) in enumerate(zip(actual, expected)):
            _compare(exercise, case, f"{quantity}[{index}]", part, wanted)
        return
    try:
        if isinstance(expected, torch.Tensor):
            if not isinstance(actual, torch.Tensor):
                raise AssertionError(f"Expected a torch.Tensor, but got {_describe(actual)}.")
            expected_tensor, actual_tensor = expected, actual
        else:
            expected_tensor = torch.tensor(float(expected), dtype=torch.float64)
            actual_tensor = _scalar(actual)
        rtol, atol = _tolerance(exercise, expected_tensor.dtype)
        torch.testing.assert_close(actual_tensor, expected_tensor, rtol=rtol, atol=atol)
    except AssertionError as mismatch:
        print(f"✗ {exercise.name}: {case.description}")
        message = f"{exercise.name}: public check '{case.description}' failed on {quantity}.\n\n{mismatch}"
        if isinstance(actual, torch.Tensor) and isinstance(expected, torch.Tensor) and actual.numel() <= _SHOWN:
            message += f"\n\nexpected: {_show(expected)}\n     got: {_show(actual)}"
        raise AssertionError(message) from None


#: Public cases are tiny and visible: their tensors are shown in full up to this many elements.
_SHOWN = 16


def _show(tensor: torch.Tensor) -> str:
    return " ".join(repr(tensor.detach()).split())


def _scalar(actual: Any) -> torch.Tensor:
    """A returned number (Python float/int or 0-d tensor) as a float64 0-d tensor on the CPU."""
    if isinstance(actual, torch.Tensor):
        if actual.dim() != 0:
            raise AssertionError(f"Expected a Python float or a 0-d tensor, but got a tensor of shape {tuple(actual.shape)}.")
        return actual.detach().to("cpu", torch.float64)
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return torch.tensor(float(actual), dtype=torch.float64)
    raise AssertionError(f"Expected a Python float or a 0-d tensor, but got {_describe(actual)}.")


def _tolerance(exercise: Exercise, dtype: torch.dtype) -> tuple[float, float]:
    if dtype.is_floating_point:
        tolerance = exercise.tolerance(dtype)
        return tolerance.rtol, tolerance.atol
    return 0.0, 0.0


def _describe(value: Any) -> str:
    if value is None:
        return "None (did the function forget to `return`?)"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a value of type {type(value).__name__}"
