"""Grading one notebook, as a list of stages:

load notebook → identify assignment → extract code → scan for forbidden calls → start the
sandboxed worker → run the hidden suites (pytest, in this process) → assign points → result.

This process holds the suites, the reference and every verdict; student code only ever runs in the
worker (see ``client.py`` and ``sandbox.py``).
"""

from __future__ import annotations

import io
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch

from autograder.submission import notebook as nbio
from autograder import limits
from autograder.course import registry
from autograder.grading import rng
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox.session import StudentError, StudentSession
from autograder.errors import INTERNAL, GraderError, SandboxUnavailable
from autograder.grading import seeds
from autograder.safeio import scrub
from autograder.report.results import ExerciseResult, NotebookResult, TestResult, exercise_status

SUITES = Path(__file__).resolve().parents[1] / "suites"


@dataclass
class Outcome:
    passed: bool
    message: str = ""
    kind: str = ""  # "", "failure", a StudentError kind, "internal" or "grader" (never scored)


@dataclass
class _Collector:
    """pytest plugin: provides the suites' fixtures and records each test's outcome."""

    session: StudentSession
    seed: int
    device: str
    propagation_devices: list[str]
    outcomes: dict[tuple[str, str], Outcome] = field(default_factory=dict)

    @pytest.fixture
    def student(self) -> StudentSession:
        return self.session

    @pytest.fixture
    def rng(self, request: pytest.FixtureRequest) -> torch.Generator:
        return rng.generator(self.seed, request.node.nodeid.encode())  # the full seed, the full state

    @pytest.fixture(name="device")
    def device_fixture(self) -> str:
        return self.device

    @pytest.fixture(name="propagation_devices")
    def propagation_devices_fixture(self) -> list[str]:
        return list(self.propagation_devices)

    @pytest.fixture
    def exercise(self, request: pytest.FixtureRequest) -> registry.Exercise:
        return registry.BY_NAME[request.module.EXERCISE]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        key = (item.module.EXERCISE, item.originalname if hasattr(item, "originalname") else item.name)
        if report.when == "call" and report.passed:
            self.outcomes.setdefault(key, Outcome(True))
        elif report.failed or report.skipped:
            if key in self.outcomes and not self.outcomes[key].passed:
                return
            self.outcomes[key] = _explain(call.excinfo, skipped=report.skipped)


def _explain(excinfo: Any, skipped: bool = False) -> Outcome:
    if skipped:
        return Outcome(False, "skipped by the grader (scores 0)", "skipped")
    exc = excinfo.value if excinfo is not None else None
    if isinstance(exc, GraderError):
        return Outcome(False, exc.message, "grader")
    if isinstance(exc, StudentError):
        prefix = {"not_implemented": "not implemented yet", "missing": "missing",
                  "timeout": "timed out", "crashed": "crashed", "protocol": "broke the grading protocol",
                  "exception": "raised an exception"}[exc.kind]
        message = exc.message if exc.kind in ("not_implemented", "missing") else f"{prefix}: {exc.message}"
        if exc.kind == "not_implemented":
            message = "not implemented yet (the stub still raises NotImplementedError)"
        return Outcome(False, message, exc.kind)
    if isinstance(exc, AssertionError):
        text = str(exc).strip()
        return Outcome(False, text if text else "a hidden check failed", "failure")
    name = type(exc).__name__ if exc is not None else "unknown"
    return Outcome(False, f"{INTERNAL}: {name} in the hidden suite", "internal")


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


def suite_files(exercises: Sequence[registry.Exercise]) -> list[str]:
    return [str(SUITES / f"test_{e.name}.py") for e in exercises if (SUITES / f"test_{e.name}.py").is_file()]


#: pytest's options for the hidden suites (after the suite files); also used by ``suite_server``.
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:xdist",
                  "-p", "no:hypothesispytest", "-p", "no:unraisableexception", "--assert=plain", "--import-mode=importlib", "-c", str(SUITES / "pytest.ini"),
                  "--rootdir", str(SUITES), "-W", "ignore::pytest.PytestAssertRewriteWarning")


def _run_suites(exercises: Sequence[registry.Exercise], collector: _Collector) -> None:
    files = suite_files(exercises)
    if not files:
        return
    args = [*files, *PYTEST_OPTIONS]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pytest.main(args, plugins=[collector])


def lease_slot(preferred: int = 0) -> "sandbox_module.SlotLease":
    try:
        return sandbox_module.lease_slot(preferred)
    except OSError as exc:
        raise GraderError(f"grader error (not your fault): no sandbox slot: {exc.strerror or exc}") from None


def check_suites(exercises: Sequence[registry.Exercise]) -> None:
    """Refuse to grade (GraderError) when a hidden suite is missing or cannot even be compiled:
    a missing suite is the grader's failure, never an official 0."""
    for exercise in exercises:
        path = SUITES / f"test_{exercise.name}.py"
        try:
            compile(path.read_bytes(), str(path), "exec")
        except FileNotFoundError:
            raise GraderError(f"the hidden suite of `{exercise.name}` is missing ({path.name}); "
                              "grading refused") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise GraderError(f"the hidden suite of `{exercise.name}` is damaged ({path.name}: "
                              f"{type(exc).__name__}); grading refused") from None


def grader_failures(exercises: Sequence[registry.Exercise], collector: "_Collector") -> list[str]:
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
            elif outcome.kind in ("grader", "internal"):
                problems.append(f"{exercise.name}/{test_name}: {outcome.message}")
    return problems


def _propagation_devices() -> list[str]:
    return ["meta", "cuda"] if torch.cuda.is_available() else ["meta"]


def _score(exercise: registry.Exercise, collector: _Collector, forbidden: list[str],
           signature_note: str | None) -> ExerciseResult:
    tests = []
    kinds = []
    for test_name, points in exercise.tests.items():
        outcome = collector.outcomes.get((exercise.name, test_name))
        if outcome is None:
            outcome = Outcome(False, "this test did not run (scores 0)", "internal")
        kinds.append(outcome.kind)
        earned = points if outcome.passed and not forbidden else 0  # a forbidden call scores the exercise 0
        tests.append(TestResult(name=test_name, passed=outcome.passed, points=earned, max_points=points,
                                message=outcome.message))
    score = sum(t.points for t in tests)
    failing = [k for k in kinds if k]
    message = signature_note or ""
    if forbidden:
        return ExerciseResult(exercise.name, 0, exercise.points, "forbidden", tests,
                              "uses a forbidden routine: " + "; ".join(forbidden[:5]))
    if failing and all(k in ("not_implemented", "missing") for k in failing) and score == 0:
        status = "not_attempted"
        if "missing" in failing:
            message = message or f"`{exercise.name}` is not defined in the notebook (was its cell deleted or renamed?)"
        else:
            message = message or "not implemented yet"
    else:
        status = exercise_status(tests)
        if status == "failed" and "timeout" in failing:
            status = "timeout"
        elif status == "failed" and any(k in ("crashed", "protocol", "internal") for k in failing):
            status = "error"
    if "internal" in failing:
        message = (message + "; " if message else "") + f"{INTERNAL}: some tests could not run"
    return ExerciseResult(exercise.name, score, exercise.points, status, tests, message)


def grade_notebook(path: str | Path | nbio.Submitted, *, device: str = "cpu",
                   sandbox: bool = True, assignment: str | None = None, seed: int | None = None,
                   slot: int = 0, launcher: Any = None, run_suites: Any = None,
                   budget_s: float | None = None) -> NotebookResult:
    """Authoritative grading of one submission (``sandbox=False`` gives an unofficial result).

    Batch grading (``autograder/frontends/batch``) passes ``launcher`` (a ``forkserver.Slot``: warm workers
    forked in the slot's sandbox) and ``run_suites`` (a ``suite_server.SuiteServer``: one pytest
    session for many submissions); both give the same results as the defaults. ``path`` is a file
    or a :class:`~autograder.submission.notebook.Submitted` (bytes and name, no file)."""
    started = time.monotonic()
    nb = nbio.load(path)
    assignment_id, exercises = nbio.identify(nb, path, assignment)
    extracted = nbio.extract(nb, nbio.trusted_notebook(assignment_id))
    if sandbox:
        reason = sandbox_module.unavailable_reason()
        if reason:
            raise SandboxUnavailable(f"the sandbox is unavailable ({reason}); official grading refuses to run")
    check_suites(exercises)
    review_notes: list[str] = []
    scan_deadline = time.thread_time() + limits.SCAN_SECONDS  # one budget for the whole submission
    findings = {e.name: _static_findings(e, extracted, review_notes, scan_deadline) for e in exercises}
    value_device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    propagation = ["meta"] if device == "meta" else _propagation_devices()
    # A cold sandbox runs as a uid of its own (a slot leased for this grading); a launcher (batch)
    # holds its own lease.
    lease = lease_slot(slot) if sandbox and launcher is None else None
    session = StudentSession(
        extracted.cells, sandboxed=sandbox, device=value_device,
        forbidden={e.name: _worker_spec(e) for e in exercises},
        sentinels=sorted({s for e in exercises for s in _sentinels(e)}), slot=lease.slot if lease else slot,
        call_timeout=max(e.timeout_s for e in exercises), launcher=launcher if sandbox else None,
        budget_s=budget_s)
    if seed is None:  # the same graded content always gets the same inputs (autograder/seeds.py)
        seed = seeds.derive_seed(assignment_id, [cell.source for cell in extracted.cells])
    collector = _Collector(session, seed, value_device, propagation)
    errors = list(extracted.problems) + review_notes
    try:
        try:
            session.start()
        except StudentError as exc:
            errors.append(exc.message)
        errors += [f"{p.label}: {p.message}" for p in session.load_problems]
        errors += list(session.skipped.values())
        (run_suites or _run_suites)(exercises, collector)
    finally:
        session.close()
        if lease is not None:
            lease.release()
    failures = grader_failures(exercises, collector)
    if failures:
        raise GraderError(f"grader error, not a grade (not your fault): {failures[0]}"
                          + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))
    errors += [f"{session_note}" for session_note in session.skipped.values() if session_note not in errors]
    if session.out_of_time:
        errors.append(f"the submission used up its time budget of {session.budget_s:g} s (loading, restarts and "
                      "calls together): the tests not run by then failed")
    results = []
    for exercise in exercises:
        hits = findings[exercise.name] + _runtime_findings(exercise, session.forbidden.get(exercise.name, []))
        results.append(_score(exercise, collector, hits, nbio.signature_problem(exercise, extracted.definitions)))
    if device == "cuda" and value_device != "cuda":
        device_note = "--device cuda asked for, but no CUDA device is available: fell back to the CPU"
    elif device == "meta":
        device_note = "values on the CPU; device handling checked on meta"
    else:
        device_note = ""
    return NotebookResult(notebook=Path(path.name if isinstance(path, nbio.Submitted) else path).name,
                          assignment=assignment_id, exercises=results,
                          official=sandbox, errors=errors, seconds=round(time.monotonic() - started, 3),
                          seed=seed, device=value_device, device_note=device_note, fingerprint=seeds.fingerprint(),
                          notices=nbio.structural_notices(extracted, list(exercises)))


sandbox_module = sandbox


def check_notebook(path: str | Path, *, assignment: str | None = None) -> NotebookResult:
    """The student's self-check (public cases only); see ``selfcheck.py``."""
    from autograder.grading.selfcheck import check_notebook as run_check

    return run_check(path, assignment=assignment)
