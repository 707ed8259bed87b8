"""Calling conventions: how the grader calls an exercise's function, declared with the exercise.

A convention is data. The grader sends it (``spec()``) with each call to the worker, whose harness
of the same name (``autograder/worker/harness.py``) calls the student's function the way the
convention says, using the exercise's own parameter names, and sends back **data only**: values,
and the raw attributes of the caller's objects read back after the call (their ids and storage
pointers, ``requires_grad``, ``is_leaf``, ``grad_fn``). Every fact a score depends on (the same
objects, updated in place, no autograd history, gradients kept) is computed here, in the grader,
by ``facts()``; the worker never judges.

The public checks (``autograder/grading/public.py``), the notebook self-check
(``autograder/grading/selfcheck.py``), the hidden suites (through ``StudentSession.run``) and the
project's tests read the convention of an exercise; none of them branches on an exercise's name.

Conventions
-----------
``Function(grad_wrt, mutates=(), outputs=())``
    ``f(*inputs)`` returns a tensor or a tuple of tensors (``outputs`` names its elements; a public
    case then gives ``expected`` by those names, with their dtypes in ``PublicCase.dtypes``); the grader asks for the vector-Jacobian
    product with respect to the named inputs (``StudentSession.vjp``). Inputs named in
    ``mutates`` are updated in place by contract (e.g. running statistics); every other input
    must be left as it was.
``GradsInPlace(params="params", returns, returns_what)``
    ``f(params, *options)`` rewrites ``p.grad`` of each parameter in place and returns a value.
    Suite arguments: the parameters' values, ``steps`` (the gradient of each parameter at each
    step; ``None`` leaves ``.grad`` unset) and the options by name. Reply: ``returned`` and
    ``grads`` per step, ``params_after``; fact: ``same_grad_objects`` per step. Public cases:
    ``{"grads": [...], options}`` -> ``{returns: value, "grads": [...]}``.
``OptimizerState(state_layout, states="states", step=None, params="params")``
    ``f(params, states, *hyperparameters[, step], **options)``: one optimizer step in place on the
    parameters and the per-parameter states, without autograd history. ``state_layout`` names the
    state tensors of one parameter: a tuple (``("v", "s")``: a tuple of tensors per parameter) or
    a single name (``"v"``: one tensor per parameter). ``step`` names the 1-based step argument.
    Suite arguments: the parameters' values, ``steps`` (each parameter's gradient per step) and
    the hyperparameters and options by name (an omitted option keeps the student's default).
    Reply: ``params`` per step, final ``states``, ``returned`` per step; facts: ``same_objects``,
    ``history_free``, ``grads_kept``. Public cases: ``{"params", "grads", hyperparameters}`` ->
    ``{"params": [...]}`` after one step.
``TableUpdate(table="Q", returns, returns_what)``
    ``f(table, ...)`` updates entries of ``table`` in place and returns a number. Reply:
    ``returned``, ``<table>_after``; fact: ``same_object``. Public cases: the arguments ->
    ``{returns: value, table: [...]}``.
``EpisodeLoop(table="Q", next_action=None)``
    The grader's epsilon-greedy loop on gymnasium's FrozenLake calls ``f`` at every step with the
    transition; ``next_action`` names the argument that receives the next action chosen by the
    same policy (on-policy methods such as SARSA), ``None`` for off-policy updates. Suite
    arguments: ``desc`` (a FrozenLake map), ``episodes``, ``max_steps``, ``alpha``, ``gamma``,
    ``epsilon``, ``seed``. Reply: the table and ``transitions``, rows ``[s, a, r, s_next, done]``
    (plus the next action when on-policy), which the grader checks against its own copy of the
    environment and replays through the reference.

``RecurrentCell(state, tuple_state=False)``
    The grader unrolls the cell over a sequence: ``state = f(x_t, state, params)`` for t = 1..T,
    then backpropagation through time from every step's outputs (``tuple_state``: the state is a
    tuple such as ``(h, c)``). Suite arguments: ``xs``, ``state`` (a list of tensors), ``params``
    (a dict), ``upstream`` (per state tensor, one tensor per step) and ``layouts``. Reply: every
    step's ``outputs``, ``grads`` (``xs``, ``state``, ``params``) or ``grad_error`` (why not: the
    fact keeps only its category, in the grader's words), ``inputs_after``.
``ModuleTransform(model)``
    A torchvision model built in the worker (``builder``, ``weights=None``) is passed to
    ``f(model, *call_args)``; the reply lists every module and parameter before and after the call
    (names, types, ids, shapes, ``requires_grad``, sampled values), the returned object's id, and
    with ``inputs`` a forward (and with ``upstream`` a backward) pass of the model the caller holds
    (``forward_error``: the fact keeps the exception's type when it is built in, never its text).
    Public cases: ``{model: builder name, num_classes}`` -> ``{"same_model", "last", "trainable",
    "frozen", "output_shape"}``.

A ``Function`` is also how ``Function.grad_wrt`` inputs are made leaves requiring grad, and how the
public checks compare the output (a tensor, or a tuple of tensors compared element by element).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch

from autograder.safeio import exception_summary, gradient_note


@dataclass(frozen=True)
class Convention:
    """Base of the conventions: ``harness`` is the worker harness's name."""

    harness: ClassVar[str] = ""

    def spec(self, signature: Sequence[str]) -> dict[str, Any]:
        """What the worker's harness needs: the convention's fields and the signature's names."""
        return {"kind": self.harness, "signature": list(signature), **asdict(self)}

    def facts(self, raw: dict[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
        """The harness's raw reply plus every fact the grader derives from it."""
        return raw


@dataclass(frozen=True)
class Function(Convention):
    grad_wrt: tuple[str, ...] = ()
    mutates: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # names of the elements of a tuple output (``("V", "policy")``)
    harness: ClassVar[str] = "function"


@dataclass(frozen=True)
class GradsInPlace(Convention):
    params: str = "params"
    returns: str = "returned"  # the returned value's key in a public case's ``expected``
    returns_what: str = "value"  # ... and what feedback calls it ("the returned <returns_what>")
    harness: ClassVar[str] = "grads_in_place"

    def facts(self, raw: dict[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
        # Every p.grad after the call is the very tensor object set before it, storage included.
        same = [all(_same_identity(before, after) for before, after in zip(b, a, strict=True))
                for b, a in zip(_list(raw.get("grad_identity_before")), _list(raw.get("grad_identity_after")), strict=True)]
        return {**raw, "same_grad_objects": same}


@dataclass(frozen=True)
class OptimizerState(Convention):
    state_layout: tuple[str, ...] | str = ("v", "s")
    states: str = "states"
    step: str | None = None
    params: str = "params"
    harness: ClassVar[str] = "optimizer_state"

    def facts(self, raw: dict[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
        before, after = _list(raw.get("identity_before")), _list(raw.get("identity_after"))
        same = len(before) == len(after) and all(_same_identity(b, a) for b, a in zip(before, after))
        params_meta = _list(raw.get("params_meta"))
        states_meta = _list(raw.get("states_meta"))
        history_free = all(isinstance(m, dict) and m.get("is_leaf") is True and m.get("requires_grad") is True
                           and m.get("grad_fn") is None for m in params_meta) and all(
            isinstance(m, dict) and m.get("is_tensor") is True and m.get("grad_fn") is None for m in states_meta)
        grads_kept = all(
            len(_list(kept)) == len(sent) and all(_same_values(g, s) for g, s in zip(_list(kept), sent))
            for kept, sent in zip(_list(raw.get("grads_after")), args.get("steps", []), strict=False))
        # the same tensor objects with another storage: p.data = p.data - ... (not in place)
        storage_replaced = (not same and len(before) == len(after) and all(
            isinstance(b, list) and isinstance(a, list) and len(b) == len(a) == 2 and b[0] == a[0]
            for b, a in zip(before, after)))
        return {**raw, "same_objects": same, "storage_replaced": storage_replaced, "history_free": history_free,
                "grads_kept": grads_kept}

    def state_names(self) -> tuple[str, ...]:
        return (self.state_layout,) if isinstance(self.state_layout, str) else tuple(self.state_layout)


@dataclass(frozen=True)
class TableUpdate(Convention):
    table: str = "Q"
    returns: str = "returned"  # the returned value's key in a public case's ``expected``
    returns_what: str = "value"  # ... and what feedback calls it ("the returned <returns_what>")
    harness: ClassVar[str] = "table_update"

    def facts(self, raw: dict[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
        return {**raw, "same_object": _same_identity(raw.get("identity_before"), raw.get("identity_after"))}


@dataclass(frozen=True)
class EpisodeLoop(Convention):
    table: str = "Q"
    next_action: str | None = None
    harness: ClassVar[str] = "episode_loop"


@dataclass(frozen=True)
class RecurrentCell(Convention):
    state: str = "h"
    tuple_state: bool = False
    harness: ClassVar[str] = "recurrent_cell"

    def facts(self, raw: dict[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
        # why gradients could not be taken, in the grader's words (the worker's text is the student's)
        error = raw.get("grad_error")
        return {**raw, "grad_error": None if error is None else gradient_note(error)}


@dataclass(frozen=True)
class ModuleTransform(Convention):
    model: str = "model"
    harness: ClassVar[str] = "module_transform"

    def facts(self, raw: dict[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
        # an exception raised in the forward pass: its type when built in, never its text (the
        # student's module raised it and could have written the hidden images into it)
        error = raw.get("forward_error")
        return {**raw, "forward_error": None if error is None else exception_summary(error)}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _same_identity(before: Any, after: Any) -> bool:
    """``[id, data_ptr]`` pairs read back by the worker: the same object over the same storage
    (``None`` before and after: still no tensor)."""
    if before is None and after is None:
        return True
    return (isinstance(before, list) and isinstance(after, list) and len(before) == 2 and before == after
            and all(type(x) is int for x in before))


def _same_values(a: Any, b: Any) -> bool:
    """Equal tensors (on ``meta`` there are no values: same shape and dtype is all one can ask)."""
    if type(a) is not torch.Tensor or type(b) is not torch.Tensor:
        return False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device.type == "meta" or b.device.type == "meta":
        return True
    return torch.equal(a.cpu(), b.cpu())
