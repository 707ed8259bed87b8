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
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.session import StudentError, StudentSession
from autograder.report.results import ExerciseResult, NotebookResult, TestResult, exercise_status


def _run_case(session: StudentSession, exercise: registry.Exercise, case: registry.PublicCase) -> list[tuple[str, Any, Any]]:
    """Call the student's function on one public case; return (quantity, actual, expected) triples."""
    lit = public._literal
    name = exercise.name
    if name == "clip_grad":
        grads = [lit(g) for g in case.args["grads"]]
        out = session.run("clip_grad", name, {"params": [g * 0 for g in grads], "steps": [grads],
                                              "theta": case.args["theta"]})
        triples = [("returned norm (before clipping)", out["returned"][0], float(case.expected["norm"]))]
        triples += [(f"params[{i}].grad after the call", g, lit(e))
                    for i, (g, e) in enumerate(zip(out["grads"][0], case.expected["grads"]))]
        return triples
    if name == "adam_step":
        out = session.run("adam", name, {"params": [lit(p) for p in case.args["params"]],
                                         "steps": [[lit(g) for g in case.args["grads"]]], "lr": case.args["lr"]})
        return [(f"params[{i}] after the step", p, lit(e))
                for i, (p, e) in enumerate(zip(out["params"][0], case.expected["params"]))]
    if name == "replace_classifier":
        n = case.expected["output_shape"][0]
        out = session.run("module_transform", name, {"builder": case.args["model"], "call_args": [case.args["num_classes"]],
                                                     "inputs": torch.empty(n, 3, 32, 32)}, device="meta")
        return _model_triples(out, case.expected)
    values = {k: lit(v, case.dtypes.get(k)) for k, v in case.args.items()}
    if name == "q_learning_update":
        out = session.run("q_update", name, values)
        return [("returned TD error", out["returned"], float(case.expected["td_error"])),
                ("Q after the update", out["Q_after"], lit(case.expected["Q"]))]
    result = session.vjp(name, values)
    return [("output", result.output, lit(case.expected))]


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
                public._compare(exercise, case, quantity, actual, expected)
            tests.append(TestResult(f"public: {case.description}", True, 1, 1))
        except StudentError as exc:
            if exc.kind in ("not_implemented", "missing"):
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
                          errors=errors, seconds=round(time.monotonic() - started, 3))
