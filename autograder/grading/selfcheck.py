"""``autograder check``: the public cases only, run against the student's notebook in a worker.

Never authoritative (``official=False``, one point per public case): it tells the student what the
notebook's public check cells would say, through the same extraction and worker as grading. Uses
the sandbox when it is available and a plain subprocess otherwise.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch

from autograder.submission import notebook as nbio
from autograder.grading import public
from autograder.course import registry
from autograder.course.conventions import Function, GradsInPlace, ModuleTransform, OptimizerState, TableUpdate
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.session import StudentError, StudentSession
from autograder.report.results import ExerciseResult, NotebookResult, TestResult, exercise_status


def _run_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list[tuple[str, Any, Any]]:
    """Call the student's function on one public case in the worker, through its calling
    convention; return (quantity, actual, expected) triples, labelled as the public checks label them."""
    return _CASES[type(exercise.call)](session, exercise, case)


def _function_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list:
    values = {k: public.literal(v, case.dtypes.get(k)) for k, v in case.args.items()}
    result = session.vjp(exercise.name, values)
    if exercise.call.outputs:  # a tuple output with named elements
        return public.named_outputs(exercise, case, result.output)
    if isinstance(case.expected, dict):  # the output and the inputs the function mutates by contract
        triples = public.outputs(result.output, case.expected["output"])
        return triples + [(f"`{k}` after the call (it is updated in place)", result.inputs_after.get(k),
                           public.literal(v, case.dtypes.get(k)))
                          for k, v in case.expected.items() if k != "output"]
    return public.outputs(result.output, case.expected)


def _grads_in_place_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list:
    convention = exercise.call
    grads = [public.literal(g) for g in case.args["grads"]]
    options = {k: v for k, v in case.args.items() if k != "grads"}
    out = session.run(exercise.name, {convention.params: [g * 0 for g in grads], "steps": [grads], **options})
    triples = [(f"the returned {convention.returns_what}", out["returned"][0], float(case.expected[convention.returns]))]
    return triples + [(f"`{convention.params}[{i}].grad` after the call", g, public.literal(e))
                      for i, (g, e) in enumerate(zip(out["grads"][0], case.expected["grads"]))]


def _optimizer_state_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list:
    convention = exercise.call
    steps = case.args["steps"] if "steps" in case.args else [case.args["grads"]]
    args = {k: v for k, v in case.args.items() if k not in ("grads", "steps", convention.params, convention.step)}
    out = session.run(exercise.name, {convention.params: [public.literal(p) for p in case.args[convention.params]],
                                      "steps": [[public.literal(g) for g in step] for step in steps], **args})
    after = "after the step" if "steps" not in case.args else f"after {len(steps)} step{'s' if len(steps) > 1 else ''}"
    triples = [(f"`{convention.params}[{i}]` {after}", p, public.literal(e))
               for i, (p, e) in enumerate(zip(out["params"][-1], case.expected[convention.params]))]
    if "states" in case.expected:
        single = isinstance(convention.state_layout, str)
        triples += [(f"`{convention.states}[{i}]` {after}", state[0] if single else tuple(state), public.literal(e))
                    for i, (state, e) in enumerate(zip(out["states"], case.expected["states"]))]
    return triples


def _table_update_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list:
    convention = exercise.call
    out = session.run(exercise.name, {k: public.literal(v, case.dtypes.get(k)) for k, v in case.args.items()})
    return [(f"the returned {convention.returns_what}", out["returned"], float(case.expected[convention.returns])),
            (f"`{convention.table}` after the update", out[f"{convention.table}_after"],
             public.literal(case.expected[convention.table]))]


def _module_transform_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list:
    convention = exercise.call
    n = case.expected["output_shape"][0]
    call_args = [v for k, v in case.args.items() if k != convention.model]
    out = session.run(exercise.name, {"builder": case.args[convention.model], "call_args": call_args,
                                      "inputs": torch.empty(n, 3, 32, 32)}, device="meta")
    return _model_triples(out, case.expected)


#: Calling convention -> how a public case runs in the worker.
_CASES = {Function: _function_case, GradsInPlace: _grads_in_place_case, OptimizerState: _optimizer_state_case,
          TableUpdate: _table_update_case, ModuleTransform: _module_transform_case}


def _model_triples(out: dict[str, Any], expected: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The public comparisons of a model transform, from the ``module_transform`` harness's data."""
    params = out["after"]["parameters"]
    last = [row for row in params if row["name"].startswith("classifier.") and row["name"].endswith(".weight")][-1:]
    shape = [last[0]["shape"][1], last[0]["shape"][0]] if last else [-1, -1]
    trainable = sum(math.prod(row["shape"]) for row in params if row["requires_grad"])
    frozen = sum(math.prod(row["shape"]) for row in params if not row["requires_grad"])
    output = out.get("output")
    output_shape = list(output.shape) if isinstance(output, torch.Tensor) else [-1]
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return [("whether the model itself is returned (1 = yes)", as_tensor(float(out["returned_id"] == out["model_id"])),
             as_tensor(float(expected["same_model"]))),
            ("(in_features, out_features) of model.classifier[-1]", as_tensor(shape), as_tensor(expected["last"])),
            ("the number of trainable parameters (only the new layer's)", as_tensor(trainable), as_tensor(expected["trainable"])),
            ("the number of frozen parameters (all the others)", as_tensor(frozen), as_tensor(expected["frozen"])),
            ("the shape of model(X) for X of shape (2, 3, 32, 32)", as_tensor(output_shape),
             as_tensor(expected["output_shape"]))]


def _check_exercise(session: StudentSession, exercise: registry.Exercise) -> ExerciseResult:
    tests = []
    status_override = None
    for case in exercise.public_cases:
        try:
            for quantity, actual, expected in _run_case(session, exercise, case):
                public.compare(exercise, case, quantity, actual, expected)
            tests.append(TestResult(f"public: {case.description}", True, 1, 1))
        except StudentError as exc:
            if exc.kind.not_attempted:
                status_override = "not_attempted"
            tests.append(TestResult(f"public: {case.description}", False, 0, 1, exc.message))
        except AssertionError as exc:
            tests.append(TestResult(f"public: {case.description}", False, 0, 1, str(exc).strip()))
    score = sum(t.points for t in tests)
    status = status_override if status_override and score == 0 else exercise_status(tests)
    return ExerciseResult(exercise.name, score, len(tests), status, tests,
                          "public cases only: the graded hidden tests go further")


def check_notebook(path: str | Path, *, assignment: str | None = None) -> NotebookResult:
    started = time.monotonic()
    nb = nbio.load(path)
    assignment_id, exercises = nbio.identify(nb, path, assignment, allow_renamed=True)
    extracted = nbio.extract(nb, nbio.trusted_notebook(assignment_id))
    errors = list(extracted.problems)
    sandboxed = sandbox.unavailable_reason() is None
    from .engine import lease_slot

    lease = lease_slot() if sandboxed else None  # a uid of its own, as for grading
    with lease or contextlib.nullcontext(), \
            StudentSession(extracted.cells, sandboxed=sandboxed, slot=lease.slot if lease else 0,
                           full_messages=True) as session:  # public inputs only: nothing hidden to leak
        try:
            session.start()
        except StudentError as exc:
            errors.append(exc.message)
        errors += [f"{p.label}: {p.message}" for p in session.load_problems]
        results = [_check_exercise(session, e) for e in exercises]
        errors += [note for note in session.skipped.values() if note not in errors]
    return NotebookResult(notebook=Path(path).name, assignment=assignment_id, exercises=results, official=False,
                          errors=errors, seconds=round(time.monotonic() - started, 3),
                          notices=nbio.structural_notices(extracted, list(exercises)))
