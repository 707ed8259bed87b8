"""The record of one submission in a class batch (``grade-batch``): what its grader returned, where
it came from and how it was graded; the JSON of ``<report>/submissions/<key>.json``
(:mod:`~autograder.report.class_outputs` reads and writes the files).

Every reader of a batch (the resume logic, the CSV tables, the class report, the gradebook) works on
:class:`BatchRecord`; the JSON stays what the batch has always written, so the records of earlier
runs read back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from autograder.report.results import NotebookResult


class RecordStatus(StrEnum):
    """How a submission's grading ended. A ``str``: compares, formats and serialises as its value."""

    GRADED = "graded"  # a result, whatever its score
    UNUSABLE = "unusable"  # the student's input cannot be graded (not a notebook, renamed...)
    ERROR = "error"  # a grader failure, never the student's: graded again on the next run
    NO_SANDBOX = "no_sandbox"  # the sandbox is unavailable: the batch stops (never written)


@dataclass(frozen=True)
class Lateness:
    """How late a submission is by the gradebook (due date, timestamp, extension), and its penalty."""

    seconds: float = 0.0
    penalty: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {"seconds": self.seconds, "penalty": self.penalty}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Lateness":
        return cls(seconds=float(data.get("seconds") or 0), penalty=float(data.get("penalty") or 0))


@dataclass(frozen=True)
class BatchRecord:
    """One submission of a batch. A grader fills what it knows (key, status, result, message,
    sha256, seed, slot, seconds, cpu); the batch adds where the submission came from (path,
    student, assignment, notebook), the grader's fingerprint, the device and what the grade
    depends on; the gradebook adds the lateness."""

    key: str
    status: RecordStatus
    path: str = ""
    student: str | None = None
    assignment: str | None = None
    notebook: str = ""
    message: str = ""
    sha256: str = ""  # of the notebook graded
    grader: str = ""  # the grader's fingerprint
    device: str = ""
    seed: int | None = None
    depends: dict[str, str] | None = None  # digests of what the grade depends on (``frontends/stale.py``)
    seconds: float | None = None
    cpu: dict[str, float] | None = None  # {"grader", "sandbox"} CPU seconds
    slot: int | None = None
    result: NotebookResult | None = None  # with status graded
    late: Lateness | None = None  # from the gradebook, when one is written
    graded_at: str = ""  # ISO time, set when the record is first written
    file_name: str = field(default="", compare=False)  # the record's file, when read from one (not stored)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RecordStatus(self.status))  # a known status, or ValueError

    @property
    def graded(self) -> NotebookResult | None:
        """The result of a graded submission; None for every other status."""
        return self.result if self.status == RecordStatus.GRADED else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key, "path": self.path, "student": self.student, "assignment": self.assignment,
            "notebook": self.notebook, "status": self.status.value, "message": self.message, "sha256": self.sha256,
            "grader": self.grader, "device": self.device, "seed": self.seed, "depends": self.depends,
            "seconds": self.seconds, "cpu": self.cpu, "slot": self.slot,
            "result": self.result.to_json() if self.result is not None else None,
        }
        if self.late is not None:
            data["late"] = self.late.to_json()
        data["graded_at"] = self.graded_at
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BatchRecord":
        """The record of ``data``; KeyError, TypeError or ValueError when it is not one."""
        if not isinstance(data.get("key"), str):
            raise ValueError("a record's key must be a string")
        result, late = data.get("result"), data.get("late")
        return cls(
            key=data["key"],
            status=RecordStatus(data["status"]),
            path=data.get("path") or "",
            student=data.get("student"),
            assignment=data.get("assignment"),
            notebook=data.get("notebook") or "",
            message=data.get("message") or "",
            sha256=data.get("sha256") or "",
            grader=data.get("grader") or "",
            device=data.get("device") or "",
            seed=data.get("seed"),
            depends=data.get("depends"),
            seconds=data.get("seconds"),
            cpu=data.get("cpu"),
            slot=data.get("slot"),
            result=NotebookResult.from_json(result) if result else None,
            late=Lateness.from_json(late) if late else None,
            graded_at=data.get("graded_at") or "",
        )
