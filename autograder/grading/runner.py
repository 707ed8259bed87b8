"""The hidden suites run by pytest, in this process: one runner for cold and batch grading.

A :class:`SuiteRunner` is one pytest session over some suite files (``SUITES/test_<exercise>.py``),
with the options of :data:`PYTEST_OPTIONS`. Its ``pytest_runtestloop`` runs submissions (*jobs*)
one after another: for each, the items of its exercises in collection order, exactly as a fresh
session would (the same items, node ids and so the same random inputs for a given seed, the same
fixtures, each item set up and torn down completely, the session's fixtures torn down after the
last item). A suite file that failed to collect runs no test of a submission that needs it, as in
a fresh session.

- **Cold grading** (``grade_notebook`` without ``run_suites``) uses a runner once:
  :meth:`SuiteRunner.run_once` collects the suites of this submission's exercises only, runs them
  in the calling thread and ends the session.
- **Batch grading** keeps one runner for many submissions: ``SuiteRunner().start()`` collects
  every suite once on a thread of its own, then each ``runner(exercises, collector)`` runs one
  submission (one at a time per runner); :meth:`SuiteRunner.close` ends the session.

The suites see a submission through the fixtures of the runner's plugin (``student``, ``rng``,
``device``, ``propagation_devices``, ``exercise``), which read the :class:`Collector` of the
submission being run; the collector receives each hidden test's :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch

from autograder.course import registry
from autograder.errors import INTERNAL, GraderError, OutcomeKind
from autograder.grading import rng
from autograder.sandbox.session import StudentError, StudentSession

SUITES = Path(__file__).resolve().parents[1] / "suites"

#: pytest's options for the hidden suites (after the suite files). Outcomes are read from the
#: exceptions themselves (:class:`Collector`), never from pytest's reports, so the session spares
#: pytest capturing log records (``no:logging``) and, in ``pytest_configure``, formatting each
#: failure's traceback with source (``tbstyle`` "no"): most of pytest's own cost per test. Neither
#: changes an outcome or a message.
PYTEST_OPTIONS = ("-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:xdist", "-p", "no:logging",
                  "-p", "no:hypothesispytest", "-p", "no:unraisableexception", "--assert=plain",
                  "--import-mode=importlib", "-c", str(SUITES / "pytest.ini"), "--rootdir", str(SUITES),
                  "-W", "ignore::pytest.PytestAssertRewriteWarning")

#: What a student's failure is called in its message (``not_implemented`` and ``missing`` say it their own way).
_PREFIXES = {OutcomeKind.TIMEOUT: "timed out", OutcomeKind.CRASHED: "crashed",
             OutcomeKind.PROTOCOL: "broke the grading protocol", OutcomeKind.EXCEPTION: "raised an exception"}


def suite_path(exercise: registry.Exercise) -> Path:
    """Where the hidden suite of ``exercise`` is (``SUITES/test_<name>.py``)."""
    return SUITES / f"test_{exercise.name}.py"


def suite_files(exercises: Sequence[registry.Exercise]) -> list[str]:
    """The hidden suite files of ``exercises`` that exist."""
    return [str(suite_path(e)) for e in exercises if suite_path(e).is_file()]


def check_suites(exercises: Sequence[registry.Exercise]) -> None:
    """Refuse to grade (GraderError) when a hidden suite is missing or cannot even be compiled:
    a missing suite is the grader's failure, never an official 0."""
    for exercise in exercises:
        path = suite_path(exercise)
        try:
            compile(path.read_bytes(), str(path), "exec")
        except FileNotFoundError:
            raise GraderError(f"the hidden suite of `{exercise.name}` is missing ({path.name}); "
                              "grading refused") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise GraderError(f"the hidden suite of `{exercise.name}` is damaged ({path.name}: "
                              f"{type(exc).__name__}); grading refused") from None


@dataclass
class Outcome:
    passed: bool
    message: str = ""
    kind: OutcomeKind = OutcomeKind.NONE  # OutcomeKind.GRADER and INTERNAL are never scored

    def __post_init__(self) -> None:
        self.kind = OutcomeKind(self.kind)


def explain(excinfo: Any, skipped: bool = False) -> Outcome:
    """The outcome of a hidden test that did not pass, from the exception that ended it."""
    if skipped:
        return Outcome(False, "skipped by the grader (scores 0)", OutcomeKind.SKIPPED)
    exc = excinfo.value if excinfo is not None else None
    if isinstance(exc, GraderError):
        return Outcome(False, exc.message, OutcomeKind.GRADER)
    if isinstance(exc, StudentError):
        if exc.kind == OutcomeKind.NOT_IMPLEMENTED:
            message = "not implemented yet (the stub still raises NotImplementedError)"
        elif exc.kind == OutcomeKind.MISSING:
            message = exc.message
        else:
            message = f"{_PREFIXES[exc.kind]}: {exc.message}"
        return Outcome(False, message, exc.kind)
    if isinstance(exc, AssertionError):
        text = str(exc).strip()
        return Outcome(False, text if text else "a hidden check failed", OutcomeKind.FAILURE)
    name = type(exc).__name__ if exc is not None else "unknown"
    return Outcome(False, f"{INTERNAL}: {name} in the hidden suite", OutcomeKind.INTERNAL)


@dataclass
class Collector:
    """One submission's part in a run of the hidden suites: what the suites' fixtures give it (the
    student's session, the seed of its inputs, the devices) and, as they end, the outcome of each
    hidden test, keyed by (exercise, test name)."""

    session: StudentSession
    seed: int
    device: str
    propagation_devices: list[str]
    outcomes: dict[tuple[str, str], Outcome] = field(default_factory=dict)

    def record(self, item: pytest.Item, report: pytest.TestReport, excinfo: Any) -> None:
        """One phase (setup, call, teardown) of a hidden test has ended: its first failure is its outcome."""
        key = (item.module.EXERCISE, item.originalname if hasattr(item, "originalname") else item.name)
        if report.when == "call" and report.passed:
            self.outcomes.setdefault(key, Outcome(True))
        elif report.failed or report.skipped:
            if key in self.outcomes and not self.outcomes[key].passed:
                return
            self.outcomes[key] = explain(excinfo, skipped=report.skipped)


class _Plugin:
    """The runner's pytest plugin: the suites' fixtures, from the collector of the submission being
    run, and the recording of each test's outcome in it."""

    def __init__(self) -> None:
        self.collector: Collector | None = None

    def _current(self) -> Collector:
        if self.collector is None:
            raise RuntimeError("a hidden test ran outside a submission")
        return self.collector

    @pytest.fixture
    def student(self) -> StudentSession:
        return self._current().session

    @pytest.fixture
    def rng(self, request: pytest.FixtureRequest) -> torch.Generator:
        return rng.generator(self._current().seed, request.node.nodeid.encode())  # the full seed, the full state

    @pytest.fixture(name="device")
    def device_fixture(self) -> str:
        return self._current().device

    @pytest.fixture(name="propagation_devices")
    def propagation_devices_fixture(self) -> list[str]:
        return list(self._current().propagation_devices)

    @pytest.fixture
    def exercise(self, request: pytest.FixtureRequest) -> registry.Exercise:
        return registry.BY_NAME[request.module.EXERCISE]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        self._current().record(item, outcome.get_result(), call.excinfo)


@dataclass
class _Job:
    exercises: Sequence[registry.Exercise]
    collector: Collector
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class SuiteRunner:
    """A pytest session over the hidden suites of ``exercises`` (every exercise by default) that
    runs submissions one at a time: once in the calling thread (:meth:`run_once`), or served from a
    thread of its own (:meth:`start`, then ``runner(exercises, collector)`` per submission)."""

    def __init__(self, exercises: Sequence[registry.Exercise] | None = None) -> None:
        self.files = suite_files(registry.EXERCISES if exercises is None else exercises)
        self._plugin = _Plugin()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._ready = threading.Event()
        self._items: dict[str, list[pytest.Item]] = {}
        self._broken: set[str] = set()  # suite files that failed to import
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------- cold grading
    @classmethod
    def run_once(cls, exercises: Sequence[registry.Exercise], collector: Collector) -> None:
        """Run the suites of ``exercises`` for one submission: a runner of these suites alone,
        used once, in this thread (pytest's output discarded)."""
        runner = cls(exercises)
        if not runner.files:
            return
        job = _Job(list(exercises), collector)
        runner._jobs.put(job)
        runner._jobs.put(None)  # the session ends after this submission
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            runner._session()
        if job.error is not None:
            raise job.error

    # ------------------------------------------------------------------------ batch grading
    def start(self, timeout: float = 600.0) -> SuiteRunner:
        """Collect the suites on a thread of its own, where the session then waits for submissions."""
        self._thread = threading.Thread(target=self._serve, name="hidden-suites", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            raise RuntimeError(f"the hidden suites could not be collected: {self._failure!r}")
        return self

    def __call__(self, exercises: Sequence[registry.Exercise], collector: Collector) -> None:
        """Run the suites of ``exercises`` for the submission ``collector`` belongs to."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the hidden-suite session has ended")
        job = _Job(list(exercises), collector)
        self._jobs.put(job)
        while not job.done.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError("the hidden-suite session has ended")
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(60)

    def _serve(self) -> None:
        try:
            self._session()
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting caller
            self._failure = exc
        finally:
            if not self._ready.is_set():
                self._failure = self._failure or RuntimeError("pytest ended before collecting")
                self._ready.set()

    # ------------------------------------------------------------------- the pytest session
    def _session(self) -> None:
        pytest.main([*self.files, *PYTEST_OPTIONS], plugins=[self._plugin, self])

    def pytest_configure(self, config: pytest.Config) -> None:
        config.option.tbstyle = "no"  # see PYTEST_OPTIONS

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._broken.add(report.nodeid.split("::")[0])

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        for item in session.items:
            self._items.setdefault(item.path.name, []).append(item)
        self._ready.set()
        while (job := self._jobs.get()) is not None:
            try:
                self._run(job)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                job.error = exc
            finally:
                job.done.set()
        return True

    def _run(self, job: _Job) -> None:
        collected = {Path(f).name for f in self.files}  # the session's files, found when it started
        present = [n for n in (suite_path(e).name for e in job.exercises) if n in collected]
        if any(n in self._broken for n in present):
            return  # as in a fresh session: a collection error runs no test at all
        items = [item for name in present for item in self._items.get(name, [])]
        self._plugin.collector = job.collector
        try:
            for index, item in enumerate(items):
                if hasattr(item, "_report_sections"):
                    item._report_sections = []  # pytest's captured output of the previous run of this item
                following = items[index + 1] if index + 1 < len(items) else None
                item.ihook.pytest_runtest_protocol(item=item, nextitem=following)
        finally:
            self._plugin.collector = None
