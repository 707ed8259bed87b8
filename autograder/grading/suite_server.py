"""One pytest session for many submissions: the hidden suites collected once, run per submission.

``engine._run_suites`` starts pytest for every submission (``pytest.main``): configuration,
plugin registration, collection, and at the end a full garbage collection, about half a second of
grader CPU against a few hundredths for the tests themselves. A :class:`SuiteServer` runs
``pytest.main`` once, on a thread of its own, with every suite file and the very options of
``engine.PYTEST_OPTIONS``; its ``pytest_runtestloop`` then waits for submissions and runs, for
each, the items of its exercises in collection order, exactly as a fresh session would (the same
items, node ids and so the same random inputs for a given seed, the same fixtures, each item set
up and torn down completely, the session's fixtures torn down after the last item).

The engine's plugin (``engine._Collector``, which provides the fixtures and records outcomes) is
registered once; before each submission its fields are set from the collector ``grade_notebook``
made for that submission, whose ``outcomes`` dictionary therefore receives the results.

Use it as ``grade_notebook(..., run_suites=server)``; one grading at a time per server.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Sequence

import pytest

from autograder.grading import engine
from autograder.course import registry


#: Outcomes are read from the exceptions themselves (``engine._Collector``), never from pytest's
#: reports, so this session spares pytest capturing log records (``no:logging``) and, in
#: ``pytest_configure``, formatting each failure's traceback with source (``tbstyle`` "no"): most
#: of pytest's own cost per test. Neither changes an outcome or a message.
EXTRA_OPTIONS = ("-p", "no:logging")


@dataclasses.dataclass
class _Job:
    exercises: Sequence[registry.Exercise]
    collector: Any
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    error: BaseException | None = None


class SuiteServer:
    """Runs the hidden suites of one submission at a time in a long-lived pytest session."""

    def __init__(self, start_timeout: float = 600.0) -> None:
        self._plugin = engine._Collector(None, 0, "cpu", ["meta"])  # type: ignore[arg-type]
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._ready = threading.Event()
        self._items: dict[str, list[pytest.Item]] = {}
        self._broken: set[str] = set()  # suite files that failed to import
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="hidden-suites", daemon=True)
        self._thread.start()
        if not self._ready.wait(start_timeout) or self._failure is not None:
            raise RuntimeError(f"the hidden suites could not be collected: {self._failure!r}")

    # ----------------------------------------------------------------------------- interface
    def __call__(self, exercises: Sequence[registry.Exercise], collector: Any) -> None:
        """Run the suites of ``exercises`` for the submission ``collector`` belongs to."""
        if not self._thread.is_alive():
            raise RuntimeError("the hidden-suite session has ended")
        job = _Job(list(exercises), collector)
        self._jobs.put(job)
        while not job.done.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError("the hidden-suite session has ended")
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(60)

    # ------------------------------------------------------------------- the pytest session
    def _main(self) -> None:
        try:
            files = engine.suite_files(registry.EXERCISES)
            pytest.main([*files, *engine.PYTEST_OPTIONS, *EXTRA_OPTIONS], plugins=[self._plugin, self])
        except BaseException as exc:  # noqa: BLE001 - reported to the waiting caller
            self._failure = exc
        finally:
            if not self._ready.is_set():
                self._failure = self._failure or RuntimeError("pytest ended before collecting")
                self._ready.set()

    def pytest_configure(self, config: pytest.Config) -> None:
        config.option.tbstyle = "no"  # see EXTRA_OPTIONS

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
        names = [f"test_{e.name}.py" for e in job.exercises]
        present = [n for n in names if (engine.SUITES / n).is_file()]
        if any(n in self._broken for n in present):
            return  # as in a fresh session: a collection error runs no test at all
        items = [item for name in present for item in self._items.get(name, [])]
        for field in dataclasses.fields(self._plugin):
            setattr(self._plugin, field.name, getattr(job.collector, field.name))
        for index, item in enumerate(items):
            if hasattr(item, "_report_sections"):
                item._report_sections = []  # captured output of the previous run of this item
            following = items[index + 1] if index + 1 < len(items) else None
            item.ihook.pytest_runtest_protocol(item=item, nextitem=following)
        self._plugin.session = None  # type: ignore[assignment]
