"""What the GRU and LSTM suites share: d2l-named parameters, the grader's sequence run through the
student's cell by the ``recurrent_cell`` harness, the reference unrolled the same way (float64, CPU,
backpropagation through time), and known mistakes unrolled alike so that feedback can name them.

The harness (``autograder/worker/harness.py``) calls ``state = cell(x_t, state, params)`` for every
step ``t`` of ``xs`` (the state is ``h`` for a GRU, the tuple ``(h, c)`` for an LSTM) and returns
every step's outputs; with ``upstream`` (one ``(T, batch, d_h)`` tensor per state tensor) also the
gradients of ``sum_t <upstream_t, state_t>`` with respect to every ``x_t``, the initial state and
every parameter: the vector-Jacobian product of the unrolled network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from autograder.grading.compare import expect, expect_close, expect_equal, expect_like, fail
from autograder.suites._common import FLOAT64, dtype_text, normal, run_on, value_and_propagation_devices

#: A cell: (x, state, params) -> new state (a tensor, or a tuple of tensors for the LSTM).
Cell = Callable[[torch.Tensor, Any, Mapping[str, torch.Tensor]], Any]

HINT_GRADIENT = ("build every gate and the new state from x, the state and the parameters with differentiable torch "
                 "operations only (@, torch.sigmoid, torch.tanh, *, +): no .detach(), .item(), .data or "
                 "torch.tensor(...) of intermediate results")
HINT_BPTT = ("backpropagation through time: the gradient reaches earlier steps through the state, so the state must "
             "stay connected from step to step (no .detach() of h or c) and every step uses the same parameter tensors")
HINT_NON_CONTIGUOUS = ("inputs and parameters may be views with unusual strides (a transpose, a slice): use @ or "
                       "torch.matmul and elementwise operations, not .view, and do not assume a memory layout")
HINT_NO_MUTATION = ("do not modify x, the state or the parameters in place (h *= z, h.mul_(...), params[...] = ...): "
                    "compute new tensors and return them")


@dataclass(frozen=True)
class CellSpec:
    """One kind of cell: its parameter names (d2l), its state's tensor names, its reference."""

    exercise: str
    names: tuple[str, ...]
    state_names: tuple[str, ...]  # ("h",) or ("h", "c")
    reference: Cell

    @property
    def tuple_state(self) -> bool:
        return len(self.state_names) > 1


@dataclass
class Problem:
    """The grader's inputs for one run: float64 CPU tensors (converted on the way)."""

    xs: torch.Tensor  # (T, batch, d_in)
    state: list[torch.Tensor]  # one (batch, d_h) tensor per state name
    params: dict[str, torch.Tensor]

    def cast(self, dtype: torch.dtype) -> "Problem":
        return Problem(self.xs.to(dtype), [s.to(dtype) for s in self.state],
                       {k: v.to(dtype) for k, v in self.params.items()})


def make_problem(rng: torch.Generator, spec: CellSpec, steps: int, batch: int, d_in: int, d_h: int, *,
                 scale: float = 0.5, biases: Mapping[str, float] | None = None) -> Problem:
    """Random inputs, state and parameters (``W_x*``: (d_in, d_h), ``W_h*``: (d_h, d_h), ``b_*``:
    (d_h,)); ``biases`` adds a constant to named biases (to saturate a gate)."""
    shapes = {"x": (d_in, d_h), "h": (d_h, d_h), "b": (d_h,)}
    params = {}
    for name in spec.names:
        kind = "b" if name.startswith("b_") else name[2]
        params[name] = normal(rng, *shapes[kind], scale=scale)
    for name, shift in (biases or {}).items():
        params[name] = params[name] + shift
    xs = normal(rng, steps, batch, d_in)
    state = [normal(rng, batch, d_h).tanh() if n == "h" else normal(rng, batch, d_h) for n in spec.state_names]
    return Problem(xs, state, params)


def upstream_for(rng: torch.Generator, spec: CellSpec, problem: Problem) -> list[torch.Tensor]:
    steps, batch = problem.xs.shape[:2]
    d_h = problem.state[0].shape[1]
    return [normal(rng, steps, batch, d_h) for _ in spec.state_names]


# ------------------------------------------------------------------------------------- running


def run(student, spec: CellSpec, problem: Problem, device: str, *, upstream: Sequence[torch.Tensor] | None = None,
        layouts: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The harness's result for the student's cell on ``problem`` (None: an inconclusive ``meta`` run)."""
    args = {"xs": problem.xs, "state": list(problem.state), "params": dict(problem.params),
            "tuple_state": spec.tuple_state, "upstream": None if upstream is None else list(upstream),
            "layouts": dict(layouts or {})}
    return run_on(student, spec.exercise, args, device, how="recurrent_cell")


def unroll(cell: Cell, spec: CellSpec, problem: Problem) -> list[list[torch.Tensor]]:
    """Every step's state tensors, ``[[h_1], [h_2], ...]`` or ``[[h_1, c_1], ...]``."""
    state: Any = tuple(problem.state) if spec.tuple_state else problem.state[0]
    steps = []
    for x in problem.xs:
        state = cell(x, state, problem.params)
        steps.append(list(state) if spec.tuple_state else [state])
    return steps


def reference_run(spec: CellSpec, problem: Problem, upstream: Sequence[torch.Tensor] | None = None):
    """The reference unrolled in float64 on the CPU: (steps' outputs, gradients or None)."""
    p = problem.cast(FLOAT64)
    leaves = Problem(p.xs.clone().requires_grad_(upstream is not None),
                     [s.clone().requires_grad_(upstream is not None) for s in p.state],
                     {k: v.clone().requires_grad_(upstream is not None) for k, v in p.params.items()})
    steps = unroll(spec.reference, spec, leaves)  # x_t are views of one leaf: its gradient is split by step
    if upstream is None:
        return [[t.detach() for t in step] for step in steps], None
    outs = [t for step in steps for t in step]
    ups = [upstream[k][t].to(FLOAT64) for t in range(len(steps)) for k in range(len(spec.state_names))]
    inputs = [leaves.xs, *leaves.state, *leaves.params.values()]
    grads = torch.autograd.grad(outs, inputs, ups)
    n_s = len(leaves.state)
    return ([[t.detach() for t in step] for step in steps],
            {"xs": list(grads[0]), "state": list(grads[1:1 + n_s]), "params": dict(zip(leaves.params, grads[1 + n_s:]))})


# ----------------------------------------------------------------------------------- comparing


def _state_name(spec: CellSpec, k: int) -> str:
    return spec.state_names[k] + "'"


def expect_outputs(result: dict[str, Any], spec: CellSpec, problem: Problem, expected: list[list[torch.Tensor]], *,
                   device: str, dtype: torch.dtype, exercise, hint: str,
                   mistakes: Mapping[str, Cell] | None = None, case: str = "") -> None:
    """Every step's returned state against the reference's, naming a known mistake when the
    student's whole run matches that mistake unrolled on the same inputs."""
    outputs = result["outputs"]
    expect(isinstance(outputs, list) and len(outputs) == len(expected),
           f"the harness got {len(outputs) if isinstance(outputs, list) else 0} step(s) back, expected {len(expected)}")
    candidates = {d: (lambda cell=cell: unroll(cell, spec, problem.cast(FLOAT64))) for d, cell in (mistakes or {}).items()}
    cache: dict[str, Any] = {}

    def mistake_at(t: int, k: int) -> dict[str, Any]:
        def value(description: str) -> Any:
            if description not in cache:
                try:
                    cache[description] = candidates[description]()
                except Exception:  # noqa: BLE001 - a mistake that cannot run on these inputs names nothing
                    cache[description] = None
            steps = cache[description]
            return None if steps is None else steps[t][k]
        return {d: (lambda d=d: value(d)) for d in candidates}

    for t, (got, want) in enumerate(zip(outputs, expected), start=1):
        parts = _parts(got, spec, t)
        for k, (actual, wanted) in enumerate(zip(parts, want)):
            quantity = f"{_state_name(spec, k)} after step {t}{case}" if len(expected) > 1 else f"{_state_name(spec, k)}{case}"
            if device == "meta":
                expect_like(actual, shape=wanted.shape, dtype=dtype, device="meta", quantity=quantity, hint=hint)
                continue
            expect_close(actual, wanted.to(device, dtype), quantity=quantity, exercise=exercise, hint=hint,
                         mistakes=mistake_at(t - 1, k))


def _parts(value: Any, spec: CellSpec, step: int) -> list[Any]:
    if not spec.tuple_state:
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != len(spec.state_names):
        what = (f"a {type(value).__name__} of length {len(value)}" if isinstance(value, (list, tuple))
                else f"a {type(value).__name__}")
        fail(f"step {step} returned {what}; expected the tuple ({', '.join(n + chr(39) for n in spec.state_names)})",
             hint="return the new state as a tuple: return H, C")
    return list(value)


def expect_gradients(result: dict[str, Any], spec: CellSpec, grads: dict[str, Any], *, device: str,
                     dtype: torch.dtype, exercise, hint: str = HINT_GRADIENT, case: str = "") -> None:
    """The gradients of every x_t, the initial state and every parameter."""
    if result.get("grad_error"):  # the grader's words (RecurrentCell.facts), never the worker's text
        fail(f"gradients{case}: could not be computed: {result['grad_error']}", hint=hint)
    got = result.get("grads") or {}
    steps = len(grads["xs"])
    wanted: list[tuple[str, Any, torch.Tensor]] = []  # the state first: a cut there explains the rest
    for k, expected in enumerate(grads["state"]):
        initial = spec.state_names[k] + ("_0" if steps > 1 else "")
        wanted.append((initial, _at(got.get("state"), k), expected))
    for t, expected in enumerate(grads["xs"]):
        wanted.append((f"x_{t + 1}" if steps > 1 else "x", _at(got.get("xs"), t), expected))
    for name, expected in grads["params"].items():
        wanted.append((name, (got.get("params") or {}).get(name), expected))
    for name, actual, expected in wanted:  # a missing gradient first: it explains wrong ones elsewhere
        if actual is None:
            fail(f"gradient of {name}{case}: no gradient flows back to {name} (the outputs do not depend on {name} "
                 "through autograd)", hint=hint)
    for name, actual, expected in wanted:
        quantity = f"gradient of {name}{case}"
        if device == "meta":
            expect_like(actual, shape=expected.shape, dtype=dtype, device="meta", quantity=quantity, hint=hint)
        else:
            expect_close(actual, expected.to(device, dtype), quantity=quantity, exercise=exercise, hint=hint)


def _at(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and index < len(values) else None


def expect_unchanged(result: dict[str, Any], spec: CellSpec, problem: Problem, device: str) -> None:
    after = result["inputs_after"]
    for t, x in enumerate(problem.xs):
        expect_equal(_at(after.get("xs"), t), x.to(device), quantity=f"x after the call" if len(problem.xs) == 1
                     else f"x_{t + 1} after the call", hint=HINT_NO_MUTATION)
    for k, s in enumerate(problem.state):
        expect_equal(_at(after.get("state"), k), s.to(device), quantity=f"{spec.state_names[k]} after the call",
                     hint=HINT_NO_MUTATION)
    for name, value in problem.params.items():
        expect_equal((after.get("params") or {}).get(name), value.to(device), quantity=f"params[{name!r}] after the call",
                     hint=HINT_NO_MUTATION)


def describe(problem: Problem) -> str:
    steps, batch, d_in = problem.xs.shape
    return f"batch {batch}, d_in {d_in}, d_h {problem.state[0].shape[1]}, {dtype_text(problem.xs.dtype)}"


@dataclass(frozen=True)
class CellChecks:
    """The tests a recurrent cell's suite shares with the other cells' (values, gradients, a
    sequence through time, odd and non-contiguous shapes, float32, devices, no mutation), run
    against the reference through :func:`run`; the gate tests stay the suite's own."""

    spec: CellSpec
    shape: tuple[int, int, int]  # (batch, d_in, d_h)
    steps: int  # length of the backpropagation-through-time sequence
    odd_shapes: tuple[tuple[int, int, int], ...]
    non_contiguous: tuple[str, ...]
    mistakes: dict[str, Any]
    hint_values: str
    hint_sequence: str

    def check_run(self, student, device: str, exercise, problem: Problem, *, upstream=None, hint: str | None = None,
                  dtype: torch.dtype = torch.float64, layouts=None, case: str = "", grad_hint: str = HINT_GRADIENT):
        result = run(student, self.spec, problem.cast(dtype), device, upstream=upstream, layouts=layouts)
        if result is None:
            return None
        expected, grads = reference_run(self.spec, problem.cast(dtype), upstream)
        expect_outputs(result, self.spec, problem, expected, device=device, dtype=dtype, exercise=exercise,
                       hint=hint or self.hint_values, mistakes=self.mistakes, case=case)
        if upstream is not None:
            expect_gradients(result, self.spec, grads, device=device, dtype=dtype, exercise=exercise, case=case,
                             hint=grad_hint)
        return result

    def check_values(self, student, rng: torch.Generator, device: str, exercise) -> None:
        self.check_run(student, device, exercise, make_problem(rng, self.spec, 1, *self.shape))

    def check_gradients(self, student, rng: torch.Generator, device: str, exercise) -> None:
        problem = make_problem(rng, self.spec, 1, *self.shape)
        self.check_run(student, device, exercise, problem, upstream=upstream_for(rng, self.spec, problem))

    def check_sequence(self, student, rng: torch.Generator, device: str, exercise) -> None:
        problem = make_problem(rng, self.spec, self.steps, *self.shape)
        self.check_run(student, device, exercise, problem, upstream=upstream_for(rng, self.spec, problem),
                       hint=self.hint_sequence, case=f" (a sequence of {self.steps} steps)", grad_hint=HINT_BPTT)

    def check_shapes(self, student, rng: torch.Generator, device: str, exercise) -> None:
        for batch, d_in, d_h in self.odd_shapes:
            problem = make_problem(rng, self.spec, 2, batch, d_in, d_h)
            self.check_run(student, device, exercise, problem, upstream=upstream_for(rng, self.spec, problem),
                           case=f" (batch {batch}, d_in {d_in}, d_h {d_h})")
        for layout in self.non_contiguous:
            problem = make_problem(rng, self.spec, 2, *self.shape)
            self.check_run(student, device, exercise, problem, upstream=upstream_for(rng, self.spec, problem),
                           hint=HINT_NON_CONTIGUOUS, case=f" for non-contiguous ({layout}) inputs and parameters",
                           layouts={"xs": layout, "state": layout, "params": layout})

    def check_float32(self, student, rng: torch.Generator, device: str, exercise) -> None:
        problem = make_problem(rng, self.spec, 3, *self.shape)
        self.check_run(student, device, exercise, problem, upstream=upstream_for(rng, self.spec, problem),
                       dtype=torch.float32, case=" (float32)")

    def check_device(self, student, rng: torch.Generator, device: str, propagation_devices, exercise) -> None:
        for where in value_and_propagation_devices(device, propagation_devices):
            for dtype in (torch.float32, torch.float64):
                problem = make_problem(rng, self.spec, 2, *self.shape)
                self.check_run(student, where, exercise, problem, upstream=upstream_for(rng, self.spec, problem),
                               dtype=dtype, case=f" ({dtype_text(dtype)} on {where})")

    def check_no_mutation(self, student, rng: torch.Generator, device: str, exercise) -> None:
        problem = make_problem(rng, self.spec, 1, *self.shape)
        result = run(student, self.spec, problem, device)
        expect_unchanged(result, self.spec, problem, device)
        # leaving the inputs alone is only worth a point when the function also does its job
        expected, _ = reference_run(self.spec, problem)
        expect_outputs(result, self.spec, problem, expected, device=device, dtype=torch.float64, exercise=exercise,
                       hint=self.hint_values)
