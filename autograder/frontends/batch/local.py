"""The local executor: a pool of grader processes on this machine, one sandbox slot each.

Processes, not threads: each grader holds a pytest session (which captures file descriptors
around every test) and spends its time in Python, where threads would share one interpreter lock.
Each process takes its slot number from a queue when it starts (slots ``first_slot`` to
``first_slot + workers - 1``, so uids ``61000 + slot`` when root), starts its sandbox, and then
grades the tasks the pool hands it, one at a time. Results come back as soon as each is done.
"""

from __future__ import annotations

import atexit
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable

from autograder.errors import INTERNAL_FOR_STAFF
from autograder.report.records import BatchRecord, RecordStatus

_GRADER: Any = None


def _start(slots: Any, device: str, log_folder: str) -> None:
    global _GRADER
    slot = slots.get()
    from autograder.frontends.batch.grader import SlotGrader, redirect_output

    redirect_output(Path(log_folder) / f"grader-slot{slot}.log")
    try:
        _GRADER = SlotGrader(slot, device)
        atexit.register(_GRADER.close)  # the sandbox is gone (and waited for) when this process is
    except Exception as exc:  # noqa: BLE001 - every task then reports it (a failing initializer breaks the pool)
        import traceback

        traceback.print_exc()
        _GRADER = f"the grader of slot {slot} could not start: {type(exc).__name__}: {exc}"


def _grade(task: dict[str, Any]) -> BatchRecord:
    if isinstance(_GRADER, str):
        return BatchRecord(key=task["key"], status=RecordStatus.ERROR, seed=task["seed"],
                           message=f"{INTERNAL_FOR_STAFF}: {_GRADER}"[:1000])
    return _GRADER.grade(task)


def run(tasks: Iterable[dict[str, Any]], *, workers: int, device: str, first_slot: int, log_folder: Path,
        on_result: Callable[[BatchRecord], None]) -> None:
    """Grade ``tasks`` on ``workers`` processes, calling ``on_result`` (in this thread) per result."""
    context = multiprocessing.get_context("spawn")  # nothing of this process (threads, locks) inherited
    slots = context.Queue()
    for index in range(workers):
        slots.put(first_slot + index)
    pending = iter(tasks)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start,
                               initargs=(slots, device, str(log_folder)))
    try:
        running = set()
        # Keep only a few tasks queued per process: a result is saved as soon as it exists, and an
        # interrupted batch loses at most the submissions being graded.
        for task in pending:
            running.add(pool.submit(_grade, task))
            if len(running) >= 2 * workers:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    on_result(future.result())
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                on_result(future.result())
    finally:
        # The graders stop their sandboxes and exit while this process writes the reports;
        # concurrent.futures joins them before the interpreter exits.
        pool.shutdown(wait=False, cancel_futures=True)
