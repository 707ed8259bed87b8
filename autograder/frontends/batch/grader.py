"""A batch grader: one sandbox slot (a zygote) and one pytest session, grading one task at a time.

Both executors use it: the local one runs one per process of a process pool, the Ray one one per
actor. A *task* is a plain dictionary (it crosses process and machine boundaries)::

    {"key", "name": file name, "path" or "data": the notebook, "assignment": id or None,
     "seed": int, "device": "cpu" | "cuda"}

and :meth:`SlotGrader.grade` returns the part of the submission's
:class:`~autograder.report.records.BatchRecord` a grader knows: key, status (graded, unusable,
error or no_sandbox), the :class:`~autograder.report.results.NotebookResult` when graded, message,
sha256 of what was graded, seed, slot, seconds and CPU time (it pickles: it crosses process and
machine boundaries as it is).

Student code runs only in the slot's sandbox; the submission is copied to a private temporary folder
of the grader (named as the student named it: the engine identifies assignments by file name).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from autograder.frontends.batch.discover import sha256
from autograder.errors import INTERNAL_FOR_STAFF, UnusableInput
from autograder.limits import MAX_NOTEBOOK_BYTES
from autograder.report.records import BatchRecord, RecordStatus
from autograder.safeio import read_submitted

# nbformat imports jsonschema, whose optional IRI format checker builds a grammar at import time
# (about 2 s of CPU); notebook validation never checks IRIs, so graders do without it.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


class SlotGrader:
    def __init__(self, slot: int, device: str = "cpu") -> None:
        from autograder.sandbox import bubblewrap as sandbox
        from autograder.sandbox import forkserver

        # The slot (and so the sandbox uid) is leased for this grader's life: another grading on
        # this machine (a second batch, `grade`, `ci`, nbgrader) never shares its process limit.
        self.lease = sandbox.lease_slot(slot)
        self.slot_number = self.lease.slot
        self.device = device
        self.slot = forkserver.Slot(self.slot_number, device=self._worker_device(device))
        self.slot.start()  # the sandbox imports torch while this process imports the engine
        from autograder.grading.runner import SuiteRunner

        self.suites = SuiteRunner().start()  # every suite, collected once for the life of this grader
        try:
            self.slot.ensure()
        except forkserver.SlotError as exc:  # reported by every grading on this slot until it starts
            sys.stderr.write(f"autograder: {exc}\n")

    @staticmethod
    def _worker_device(device: str) -> str:
        """The engine's choice (``grade_notebook``): CUDA where asked for and present, else the CPU."""
        if device != "cuda":
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def grade(self, task: dict[str, Any]) -> BatchRecord:
        from autograder.sandbox import bubblewrap as sandbox
        from autograder.grading.engine import grade_notebook
        from autograder.submission.notebook import Submitted
        from autograder.errors import GraderError, SandboxUnavailable

        started = time.monotonic()
        out = BatchRecord(key=task["key"], status=RecordStatus.ERROR, seed=task["seed"], slot=self.slot_number,
                          sha256=task.get("sha256", ""))
        reason = sandbox.unavailable_reason()
        if reason:  # official grading fails closed: the batch stops
            return replace(out, status=RecordStatus.NO_SANDBOX,
                           message=f"the sandbox is unavailable on {os.uname().nodename} ({reason}); "
                                   "official grading refuses to run")
        try:  # a regular file below the course root, never through a symbolic link
            data = task["data"] if task.get("data") is not None else read_submitted(
                task["path"], below=task.get("root") or str(Path(task["path"]).parent), limit=MAX_NOTEBOOK_BYTES)
        except UnusableInput as exc:
            return replace(out, status=RecordStatus.UNUSABLE, message=str(exc))
        out = replace(out, sha256=sha256(data))
        cpu, sandbox_cpu = time.process_time(), self.slot.sandbox_cpu
        submitted = Submitted(Path(task["name"]).name or "submission.ipynb", data)
        try:
            self.slot.reset()
            sandbox_cpu = self.slot.sandbox_cpu  # from here: this submission's
            result = grade_notebook(submitted, device=task.get("device", self.device), assignment=task.get("assignment"),
                                    seed=task["seed"], slot=self.slot_number, launcher=self.slot,
                                    run_suites=self.suites, budget_s=task.get("budget_s"))
            out = replace(out, status=RecordStatus.GRADED, result=result, seed=result.seed)
        except UnusableInput as exc:
            out = replace(out, status=RecordStatus.UNUSABLE, message=str(exc))
        except SandboxUnavailable as exc:
            out = replace(out, status=RecordStatus.NO_SANDBOX, message=str(exc))
        except GraderError as exc:  # retried already; never a score, retried on resume
            out = replace(out, status=RecordStatus.ERROR, message=str(exc)[:1000])
        except Exception as exc:  # noqa: BLE001 - a grader bug, not the student's fault; retried on resume
            out = replace(out, status=RecordStatus.ERROR, message=f"{INTERNAL_FOR_STAFF}: "
                                                                  f"{type(exc).__name__}: {exc}"[:1000])
        finally:
            self.slot.reset()
        return replace(out, seconds=round(time.monotonic() - started, 3),
                       cpu={"grader": round(time.process_time() - cpu, 3),
                            "sandbox": round(max(0.0, self.slot.sandbox_cpu - sandbox_cpu), 3)})

    def close(self) -> None:
        self.slot.close()
        self.suites.close()
        self.lease.release()


def redirect_output(log: Path) -> None:
    """Send this process's stdout and stderr (descriptors 1 and 2) to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
