"""``autograder check``: the public cases only, run against the student's notebook in a worker.

Never authoritative (``official=False``, one point per public case): it tells the student what the
notebook's public check cells would say, through the same extraction and worker as grading. Uses
the sandbox when it is available and a plain subprocess otherwise.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

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
    values = {k: lit(v, case.dtypes.get(k)) for k, v in case.args.items()}
    if name == "q_learning_update":
        out = session.run("q_update", name, values)
        return [("returned TD error", out["returned"], float(case.expected["td_error"])),
                ("Q after the update", out["Q_after"], lit(case.expected["Q"]))]
    result = session.vjp(name, values)
    return [("output", result.output, lit(case.expected))]


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
    assignment_id, exercises = nbio.identify(nb, path, assignment)
    extracted = nbio.extract(nb, nbio.trusted_notebook(assignment_id))
    errors = list(extracted.problems)
    sandboxed = sandbox.unavailable_reason() is None
    from .engine import lease_slot

    lease = lease_slot() if sandboxed else None  # a uid of its own, as for grading
    with lease or contextlib.nullcontext(), \
            StudentSession(extracted.cells, sandboxed=sandboxed, slot=lease.slot if lease else 0) as session:
        try:
            session.start()
        except StudentError as exc:
            errors.append(exc.message)
        errors += [f"{p.label}: {p.message}" for p in session.load_problems]
        results = [_check_exercise(session, e) for e in exercises]
        errors += [note for note in session.skipped.values() if note not in errors]
    return NotebookResult(notebook=Path(path).name, assignment=assignment_id, exercises=results, official=False,
                          errors=errors, seconds=round(time.monotonic() - started, 3))
