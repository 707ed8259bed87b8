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

from autograder.course.conventions import Function, GradsInPlace, ModuleTransform, OptimizerState, TableUpdate
from autograder.course.registry import BY_NAME, Exercise, PublicCase

__all__ = ["check", "hidden_tests_run_by_the_grader", "trial", "Trial", "literal", "compare", "initial_states", "outputs", "named_outputs"]

#: (quantity, actual, expected): one comparison after a call, e.g. ("the output", Y, Y_expected).
Comparison = tuple[str, Any, Any]


@dataclass
class Trial:
    """One public case made concrete: how to call the function and what to compare afterwards."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    comparisons: Callable[[Any], list[Comparison]]  # the call's result -> what to compare
    earlier_calls: int = 0  # calls made before the compared one (steps of an optimizer), same args
    before_call: Callable[[int], None] | None = None  # run before call i (sets that step's gradients)

    def values(self, exercise: Exercise) -> dict[str, Any]:
        """The arguments by parameter name."""
        return {**dict(zip(exercise.parameters(), self.args)), **self.kwargs}


def trial(exercise: Exercise, case: PublicCase) -> Trial:
    """Public case ``case`` as a call of the exercise's calling convention."""
    return _TRIALS[type(exercise.call)](exercise, case)


def check(fn: Callable[..., Any], name: str | None = None) -> None:
    """Run the public examples of exercise ``name`` (default: ``fn.__name__``) against ``fn``.

    Prints one line per passing case; raises ``AssertionError`` on the first mismatch. Errors
    raised by ``fn`` itself (``NotImplementedError`` included) propagate unchanged, with a note
    saying which case was being checked.
    """
    exercise = _exercise(fn, name)
    for case in exercise.public_cases:
        made = trial(exercise, case)
        try:
            for call in range(made.earlier_calls + 1):
                if made.before_call is not None:
                    made.before_call(call)
                result = fn(*made.args, **made.kwargs)
        except NotImplementedError:
            print(f"✗ {exercise.name}: not implemented yet (replace `raise NotImplementedError()` with your code)")
            raise
        except Exception as error:  # the student's own error: keep its traceback, say which case
            print(f"✗ {exercise.name}: {case.description}: raised {type(error).__name__}: {error}")
            error.add_note(f"(raised by {exercise.name} in the public check '{case.description}')")
            raise
        try:
            for quantity, actual, expected in made.comparisons(result):
                compare(exercise, case, quantity, actual, expected)
        except AssertionError as mismatch:
            if not case.hint:
                raise
            # the hint of the graded test this case previews: the same words grading uses
            raise AssertionError(f"{mismatch}\n\nHint: {case.hint}") from None
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


def literal(value: Any, dtype: str | None = None) -> Any:
    """Nested lists become tensors (float64 unless ``dtype`` names another), also inside tuples and
    dicts (an LSTM state, a dict of parameters); scalars stay as they are."""
    if isinstance(value, list):
        return torch.tensor(value, dtype=getattr(torch, dtype or "float64"))
    if isinstance(value, tuple):
        return tuple(literal(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: literal(v, dtype) for k, v in value.items()}
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
    for parameter in exercise.parameters():
        if parameter not in values:
            gap = True
        elif gap:
            kwargs[parameter] = values[parameter]
        else:
            args.append(values[parameter])
    return tuple(args), kwargs


def _function_trial(exercise: Exercise, case: PublicCase) -> Trial:
    """A function: compare its output, and check that no input tensor changed.

    An ``expected`` dict holds the output under ``"output"`` and, under an input's name, what that
    input must hold after the call (an input the exercise updates in place: ``Function.mutates``);
    every other input must be left as it was. A tuple output whose elements the convention names
    (``Function.outputs``) is expected as a dict by those names.
    """
    values = {key: literal(value, case.dtypes.get(key)) for key, value in case.args.items()}
    inputs = {name: tensor for key, value in values.items() for name, tensor in _tensors(value, key).items()}
    originals = {name: tensor.clone() for name, tensor in inputs.items()}
    args, kwargs = _arguments(exercise, values)
    named = exercise.call.outputs if isinstance(exercise.call, Function) else ()
    in_place = dict(case.expected) if isinstance(case.expected, dict) and not named else {"output": case.expected}
    expected = in_place.pop("output")
    updated = {key: literal(value, case.dtypes.get(key)) for key, value in in_place.items()}

    def comparisons(result: Any) -> list[Comparison]:
        out: list[Comparison] = named_outputs(exercise, case, result) if named else outputs(result, expected)
        for key, after in updated.items():
            out.append((f"`{key}` after the call (it is updated in place)", values[key], after))
        for name, before in originals.items():
            if name not in updated:
                out.append((f"the input `{name}`, which changed (functions must not modify their inputs)", inputs[name], before))
        return out

    return Trial(args, kwargs, comparisons)


def outputs(result: Any, expected: Any) -> list[Comparison]:
    """The output compared with ``expected`` (a tuple of tensors is compared element by element)."""
    return [("the output", result, literal(expected))]


def named_outputs(exercise: Exercise, case: PublicCase, result: Any) -> list[Comparison]:
    """A tuple output whose elements ``Function.outputs`` names, expected by name."""
    named = exercise.call.outputs
    if not (isinstance(result, (tuple, list)) and len(result) == len(named)):
        raise AssertionError(f"{exercise.name} must return a tuple ({', '.join(named)}), but returned {_describe(result)}.")
    return [(f"the returned {name}", value, literal(case.expected[name], case.dtypes.get(name)))
            for name, value in zip(named, result)]


def _grads_in_place_trial(exercise: Exercise, case: PublicCase) -> Trial:
    """``{grads: [...], options}``: one parameter per gradient, ``.grad`` set, rewritten in place."""
    convention = exercise.call
    grads = [literal(grad) for grad in case.args["grads"]]
    params = [torch.zeros_like(grad, requires_grad=True) for grad in grads]
    for param, grad in zip(params, grads):
        param.grad = grad.clone()
    expected_grads = [literal(grad) for grad in case.expected["grads"]]
    values = {convention.params: params, **{k: v for k, v in case.args.items() if k != "grads"}}
    args, kwargs = _arguments(exercise, values)

    def comparisons(result: Any) -> list[Comparison]:
        out: list[Comparison] = [(f"the returned {convention.returns_what}", result,
                                  float(case.expected[convention.returns]))]
        for i, (param, grad) in enumerate(zip(params, expected_grads)):
            out.append((f"`{convention.params}[{i}].grad` after the call", param.grad, grad))
        return out

    return Trial(args, kwargs, comparisons)


def initial_states(convention: OptimizerState, params: Sequence[torch.Tensor]) -> list[Any]:
    """Zero states shaped like each parameter, in the convention's layout."""
    if isinstance(convention.state_layout, str):
        return [torch.zeros_like(param) for param in params]
    return [tuple(torch.zeros_like(param) for _ in convention.state_layout) for param in params]


def _optimizer_state_trial(exercise: Exercise, case: PublicCase) -> Trial:
    """``{params, grads | steps, hyperparameters}``: leaves with zero states in the convention's
    layout; one call per step of gradients (``.grad`` set before each call); the parameters (and
    the states, when ``expected`` gives them) compared after the last step."""
    convention = exercise.call
    params = [literal(param).requires_grad_() for param in case.args[convention.params]]
    steps = case.args["steps"] if "steps" in case.args else [case.args["grads"]]
    states = initial_states(convention, params)
    values = {**{k: v for k, v in case.args.items() if k not in ("grads", "steps")}, convention.params: params,
              convention.states: states}
    args, kwargs = _arguments(exercise, values)
    after = "after the step" if "steps" not in case.args else f"after {len(steps)} step{'s' if len(steps) > 1 else ''}"

    def set_gradients(call: int) -> None:
        for param, grad in zip(params, steps[call]):
            param.grad = literal(grad)

    set_gradients(0)  # ready for a first call even without ``before_call``

    def comparisons(result: Any) -> list[Comparison]:
        out: list[Comparison] = [(f"`{convention.params}[{i}]` {after}", param.detach(), literal(want))
                                 for i, (param, want) in enumerate(zip(params, case.expected[convention.params]))]
        if "states" in case.expected:
            out += [(f"`{convention.states}[{i}]` {after}", state, literal(want))
                    for i, (state, want) in enumerate(zip(states, case.expected["states"]))]
        return out

    return Trial(args, kwargs, comparisons, len(steps) - 1, set_gradients)


def _table_update_trial(exercise: Exercise, case: PublicCase) -> Trial:
    """The table updated in place; a number is returned."""
    convention = exercise.call
    values = {key: literal(value, case.dtypes.get(key)) for key, value in case.args.items()}
    args, kwargs = _arguments(exercise, values)

    def comparisons(result: Any) -> list[Comparison]:
        return [
            (f"the returned {convention.returns_what}", result, float(case.expected[convention.returns])),
            (f"`{convention.table}` after the update", values[convention.table], literal(case.expected[convention.table])),
        ]

    return Trial(args, kwargs, comparisons)


def _module_transform_trial(exercise: Exercise, case: PublicCase) -> Trial:
    """``{model: a torchvision builder name, num_classes}``: the model built on the ``meta`` device
    (``weights=None``: no download, no memory), transformed, then counted and run on meta inputs."""
    from torchvision import models

    convention = exercise.call
    with torch.device("meta"):
        model = getattr(models, case.args[convention.model])(weights=None)
    values = {**case.args, convention.model: model}
    args, kwargs = _arguments(exercise, values)
    expected = case.expected

    def comparisons(result: Any) -> list[Comparison]:
        return _model_comparisons(model, result, expected)

    return Trial(args, kwargs, comparisons)
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


#: Calling convention -> how a public case becomes a call and its comparisons.
_TRIALS: dict[type, Callable[[Exercise, PublicCase], Trial]] = {
    Function: _function_trial,
    GradsInPlace: _grads_in_place_trial,
    OptimizerState: _optimizer_state_trial,
    TableUpdate: _table_update_trial,
    ModuleTransform: _module_transform_trial,
}


# -- comparing --------------------------------------------------------------------------------


def compare(exercise: Exercise, case: PublicCase, quantity: str, actual: Any, expected: Any) -> None:
    """``assert_close`` with the exercise's tolerance; a Python float is expected as a float or 0-d tensor."""
    if isinstance(expected, tuple):  # a tuple of tensors, such as an LSTM's (h', c')
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            print(f"✗ {exercise.name}: {case.description}")
            raise AssertionError(f"{exercise.name}: public check '{case.description}' failed on {quantity}: expected a "
                                 f"tuple of {len(expected)} tensors, got {_describe(actual)}.") from None
        for index, (part, wanted) in enumerate(zip(actual, expected)):
            compare(exercise, case, f"{quantity}[{index}]", part, wanted)
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
