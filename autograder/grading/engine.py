"""Grading one notebook, as a list of stages (``grade_notebook`` calls them in this order):

1. :func:`read_submission` — load the notebook, identify its assignment, extract its code;
2. :func:`refuse_ungradable` — official grading without a sandbox, a hidden suite missing or damaged;
3. :func:`scan_submission` — the static scan for forbidden calls;
4. :func:`open_session` and :func:`start_session` — the sandboxed worker, running the notebook's cells;
5. the hidden suites, run by pytest in this process (``runner.py``: a runner used once, or batch's);
6. :func:`refuse_grader_failures` — a hidden test that did not run or could not judge is no grade;
7. :func:`score_exercise` for each exercise (:func:`score_exercises`);
8. :func:`assemble_result` — the :class:`~autograder.report.results.NotebookResult`.

This process holds the suites, the reference and every verdict; student code only ever runs in the
worker (see ``autograder/sandbox/session.py`` and ``bubblewrap.py``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from autograder.submission import notebook as nbio
from autograder import limits
from autograder.course import registry
from autograder.sandbox import bubblewrap as sandbox_module
from autograder.sandbox.session import StudentError, StudentSession
from autograder.errors import GRADER_ERROR, INTERNAL, GraderError, OutcomeKind, SandboxUnavailable
from autograder.grading import seeds
from autograder.grading.runner import Collector, Outcome, SuiteRunner, check_suites
from autograder.safeio import scrub
from autograder.report.results import ExerciseResult, NotebookResult, Status, TestResult, exercise_status


# ----------------------------------------------------------------------- forbidden-call policy
def _static_findings(exercise: registry.Exercise, extracted: nbio.Extracted, notes: list[str],
                     deadline: float | None = None) -> list[str]:
    """Forbidden calls in the exercise's graded code. Tampering with the recorders counts against
    the exercise only inside its graded code (the function and the helpers it reaches); elsewhere
    it cannot change a verdict made here, so it is noted for review and costs nothing."""
    from autograder.submission.scan import TAMPERING, scan

    spans = nbio.graded_spans(extracted, exercise.name)
    out = []
    for f in scan(extracted.student_sources, exercise.name, exercise.forbidden, deadline=deadline,
                  trees=extracted.student_trees):
        label = extracted.student_labels[f.cell] if 0 <= f.cell < len(extracted.student_labels) else "a cell"
        text = f"{f.call} ({label}, line {f.line}: `{f.evidence}`)" if f.cell >= 0 else f.call
        if f.call == TAMPERING and not any(c == f.cell and a <= f.line <= b for c, a, b in spans):
            note = f"for review: {text}, outside the graded functions"
            if note not in notes:
                notes.append(note)
            continue
        out.append(text)
    return out


def _worker_spec(exercise: registry.Exercise) -> dict[str, list[str]]:
    from autograder.grading import forbidden

    return {"patterns": list(forbidden.patterns_for(exercise)), "aten": list(forbidden.aten_for(exercise))}


def _sentinels(exercise: registry.Exercise) -> list[str]:
    from autograder.grading import forbidden

    return list(forbidden.sentinels_for(exercise))


def _runtime_findings(exercise: registry.Exercise, hits: Sequence[str]) -> list[str]:
    """The worker's recorder sees every forbidden route of the notebook; keep this exercise's."""
    from autograder.grading import forbidden

    out = []
    for hit in hits:
        if hit.startswith("recorder tampering"):  # the worker's text: scrubbed (no numbers, no reprs)
            out.append("recorder tampering: " + scrub(hit.removeprefix("recorder tampering").lstrip(": ")))
            continue
        try:  # named by the grader, never with the worker's text
            out.append(f"{forbidden.name_for(exercise, hit)} (seen while running it)")
        except ValueError:
            continue  # forbidden for another exercise, allowed here
    return out


def lease_slot(preferred: int = 0) -> sandbox_module.SlotLease:
    try:
        return sandbox_module.lease_slot(preferred)
    except OSError as exc:
        raise GraderError(f"{GRADER_ERROR}: no sandbox slot: {exc.strerror or exc}") from None


def grader_failures(exercises: Sequence[registry.Exercise], collector: Collector) -> list[str]:
    """Why this grading is the grader's failure (empty when it is not): a hidden test that did not
    run (a suite or the reference that could not be imported), raised inside the suite, or could
    not get a worker."""
    problems = []
    for exercise in exercises:
        for test_name in exercise.tests:
            outcome = collector.outcomes.get((exercise.name, test_name))
            if outcome is None:
                problems.append(f"{exercise.name}/{test_name} did not run (is the hidden suite or the "
                                "reference missing or damaged?)")
            elif outcome.kind.grader_failed:
                problems.append(f"{exercise.name}/{test_name}: {outcome.message}")
    return problems


def _propagation_devices() -> list[str]:
    return ["meta", "cuda"] if torch.cuda.is_available() else ["meta"]


# ------------------------------------------------------------------------------ the stages
@dataclass
class Submission:
    """A notebook read for grading."""

    name: str  # the notebook's file name, as submitted
    assignment: str
    exercises: list[registry.Exercise]
    extracted: nbio.Extracted


@dataclass
class Scan:
    findings: dict[str, list[str]]  # forbidden calls in each exercise's graded code
    notes: list[str]  # for review only, costing nothing


@dataclass
class Devices:
    asked: str  # --device
    values: str  # where the values are computed: CUDA where asked for and present, else the CPU
    propagation: list[str]  # where the suites check that results follow the inputs' device


def read_submission(path: str | Path | nbio.Submitted, assignment: str | None) -> Submission:
    """Load the notebook (or raise UnusableInput), identify its assignment, extract its code."""
    nb = nbio.load(path)
    assignment_id, exercises = nbio.identify(nb, path, assignment)
    extracted = nbio.extract(nb, nbio.trusted_notebook(assignment_id))
    name = Path(path.name if isinstance(path, nbio.Submitted) else path).name
    return Submission(name, assignment_id, list(exercises), extracted)


def refuse_ungradable(submission: Submission, *, official: bool) -> None:
    """Refuse before any student code runs: official grading where the sandbox is unavailable
    (SandboxUnavailable), a hidden suite missing or damaged (GraderError)."""
    if official:
        reason = sandbox_module.unavailable_reason()
        if reason:
            raise SandboxUnavailable(f"the sandbox is unavailable ({reason}); official grading refuses to run")
    check_suites(submission.exercises)


def scan_submission(submission: Submission) -> Scan:
    """The static forbidden-call scan of every exercise, within one time budget for the submission."""
    notes: list[str] = []
    deadline = time.thread_time() + limits.SCAN_SECONDS
    findings = {e.name: _static_findings(e, submission.extracted, notes, deadline) for e in submission.exercises}
    return Scan(findings, notes)


def choose_devices(device: str) -> Devices:
    value_device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    return Devices(device, value_device, ["meta"] if device == "meta" else _propagation_devices())


def hidden_seed(submission: Submission, seed: int | None) -> int:
    """The seed of the hidden inputs: given, or derived from the graded content, which therefore
    always gets the same inputs (``autograder/grading/seeds.py``)."""
    if seed is not None:
        return seed
    return seeds.derive_seed(submission.assignment, [cell.source for cell in submission.extracted.cells])


@contextlib.contextmanager
def open_session(submission: Submission, devices: Devices, *, sandboxed: bool, slot: int, launcher: Any,
                 budget_s: float | None) -> Iterator[StudentSession]:
    """The submission's worker (started by :func:`start_session`), closed on leaving. A cold
    sandbox runs as a uid of its own (a slot leased here for this grading); a launcher (batch)
    holds its own lease."""
    exercises = submission.exercises
    lease = lease_slot(slot) if sandboxed and launcher is None else None
    try:
        session = StudentSession(
            submission.extracted.cells, sandboxed=sandboxed, device=devices.values,
            forbidden={e.name: _worker_spec(e) for e in exercises},
            sentinels=sorted({s for e in exercises for s in _sentinels(e)}), slot=lease.slot if lease else slot,
            call_timeout=max(e.timeout_s for e in exercises), launcher=launcher if sandboxed else None,
            budget_s=budget_s)
        try:
            yield session
        finally:
            session.close()
    finally:
        if lease is not None:
            lease.release()


def start_session(session: StudentSession) -> list[str]:
    """Start the worker, which runs the notebook's cells: what went wrong, one line each."""
    errors = []
    try:
        session.start()
    except StudentError as exc:
        errors.append(exc.message)
    errors += [f"{p.label}: {p.message}" for p in session.load_problems]
    errors += list(session.skipped.values())
    return errors


def refuse_grader_failures(exercises: Sequence[registry.Exercise], collector: Collector) -> None:
    """No grade at all (GraderError) when a hidden test did not run or the grader could not judge."""
    failures = grader_failures(exercises, collector)
    if failures:
        raise GraderError(f"{GRADER_ERROR}, not a grade: {failures[0]}"
                          + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))


def session_notes(session: StudentSession, errors: list[str]) -> list[str]:
    """What the session learned while the suites ran: cells skipped since, the time budget used up."""
    notes = [note for note in session.skipped.values() if note not in errors]
    if session.out_of_time:
        notes.append(f"the submission used up its time budget of {session.budget_s:g} s (loading, restarts and "
                     "calls together): the tests not run by then failed")
    return notes


def score_exercise(exercise: registry.Exercise, collector: Collector, forbidden: list[str],
                   signature_note: str | None) -> ExerciseResult:
    tests = []
    kinds = []
    for test_name, points in exercise.tests.items():
        outcome = collector.outcomes.get((exercise.name, test_name))
        if outcome is None:
            outcome = Outcome(False, "this test did not run (scores 0)", OutcomeKind.INTERNAL)
        kinds.append(outcome.kind)
        earned = points if outcome.passed and not forbidden else 0  # a forbidden call scores the exercise 0
        tests.append(TestResult(name=test_name, passed=outcome.passed, points=earned, max_points=points,
                                message=outcome.message))
    score = sum(t.points for t in tests)
    failing = [k for k in kinds if k != OutcomeKind.NONE]
    message = signature_note or ""
    if forbidden:
        return ExerciseResult(exercise.name, 0, exercise.points, Status.FORBIDDEN, tests,
                              "uses a forbidden routine: " + "; ".join(forbidden[:5]))
    if failing and all(k.not_attempted for k in failing) and score == 0:
        status = Status.NOT_ATTEMPTED
        if OutcomeKind.MISSING in failing:
            message = message or f"`{exercise.name}` is not defined in the notebook (was its cell deleted or renamed?)"
        else:
            message = message or "not implemented yet"
    else:
        status = exercise_status(tests)
        if status == Status.FAILED and OutcomeKind.TIMEOUT in failing:
            status = Status.TIMEOUT
        elif status == Status.FAILED and any(k in (OutcomeKind.CRASHED, OutcomeKind.PROTOCOL, OutcomeKind.INTERNAL)
                                        for k in failing):
            status = Status.ERROR
    if OutcomeKind.INTERNAL in failing:
        message = (message + "; " if message else "") + f"{INTERNAL}: some tests could not run"
    return ExerciseResult(exercise.name, score, exercise.points, status, tests, message)


def score_exercises(submission: Submission, scan: Scan, session: StudentSession,
                    collector: Collector) -> list[ExerciseResult]:
    """Each exercise's points: its hidden tests, unless a forbidden call was found (statically or
    while it ran)."""
    results = []
    for exercise in submission.exercises:
        hits = scan.findings[exercise.name] + _runtime_findings(exercise, session.forbidden.get(exercise.name, []))
        results.append(score_exercise(exercise, collector, hits,
                                      nbio.signature_problem(exercise, submission.extracted.definitions)))
    return results


def assemble_result(submission: Submission, results: list[ExerciseResult], errors: list[str], *, official: bool,
                    seed: int, devices: Devices, started: float) -> NotebookResult:
    if devices.asked == "cuda" and devices.values != "cuda":
        device_note = "--device cuda asked for, but no CUDA device is available: fell back to the CPU"
    elif devices.asked == "meta":
        device_note = "values on the CPU; device handling checked on meta"
    else:
        device_note = ""
    return NotebookResult(notebook=submission.name, assignment=submission.assignment, exercises=results,
                          official=official, errors=errors, seconds=round(time.monotonic() - started, 3),
                          seed=seed, device=devices.values, device_note=device_note, fingerprint=seeds.fingerprint(),
                          notices=nbio.structural_notices(submission.extracted, submission.exercises))


def grade_notebook(path: str | Path | nbio.Submitted, *, device: str = "cpu",
                   sandbox: bool = True, assignment: str | None = None, seed: int | None = None,
                   slot: int = 0, launcher: Any = None, run_suites: Any = None,
                   budget_s: float | None = None) -> NotebookResult:
    """Authoritative grading of one submission (``sandbox=False`` gives an unofficial result): the
    stages of this module's docstring, in order.

    Batch grading (``autograder/frontends/batch``) passes ``launcher`` (a ``forkserver.Slot``: warm workers
    forked in the slot's sandbox) and ``run_suites`` (a started ``runner.SuiteRunner``: one pytest
    session for many submissions); both give the same results as the defaults (a cold sandbox, and
    a runner of this submission's suites used once). ``path`` is a file or a
    :class:`~autograder.submission.notebook.Submitted` (bytes and name, no file)."""
    started = time.monotonic()
    submission = read_submission(path, assignment)
    refuse_ungradable(submission, official=sandbox)
    scan = scan_submission(submission)
    devices = choose_devices(device)
    seed = hidden_seed(submission, seed)
    with open_session(submission, devices, sandboxed=sandbox, slot=slot, launcher=launcher,
                      budget_s=budget_s) as session:
        collector = Collector(session, seed, devices.values, devices.propagation)
        errors = list(submission.extracted.problems) + scan.notes + start_session(session)
        (run_suites or SuiteRunner.run_once)(submission.exercises, collector)
    refuse_grader_failures(submission.exercises, collector)
    errors += session_notes(session, errors)
    results = score_exercises(submission, scan, session, collector)
    return assemble_result(submission, results, errors, official=sandbox, seed=seed, devices=devices,
                           started=started)


def check_notebook(path: str | Path, *, assignment: str | None = None) -> NotebookResult:
    """The student's self-check (public cases only); see ``selfcheck.py``."""
    from autograder.grading.selfcheck import check_notebook as run_check

    return run_check(path, assignment=assignment)
