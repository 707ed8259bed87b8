"""The one result model every report is rendered from (text, JSON, Markdown, Gradescope, JUnit,
nbgrader gradebook and cell feedback, class report, pull-request report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """The outcome of an exercise. A ``str``: compares, formats and serialises as its value."""

    PASSED = "passed"
    PARTIAL = "partial"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"
    FORBIDDEN = "forbidden"
    ERROR = "error"  # the student's code crashed the worker, or the grader failed (see errors.INTERNAL)
    TIMEOUT = "timeout"


STATUSES: tuple[str, ...] = tuple(status.value for status in Status)


@dataclass(frozen=True)
class TestResult:
    """One hidden (or public) test: its points are decided once, when it is scored."""

    __test__ = False  # not a pytest test class

    name: str
    passed: bool
    points: float
    max_points: float
    message: str = ""


@dataclass
class ExerciseResult:
    name: str
    score: float
    max_score: float
    status: Status
    tests: list[TestResult] = field(default_factory=list)
    message: str = ""  # exercise-level explanation (forbidden call, timeout, missing function...)

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # a known outcome, or ValueError

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "score": self.score,
            "max_score": self.max_score,
            "status": self.status.value,
            "message": self.message,
            "tests": [asdict(t) for t in self.tests],
        }


@dataclass
class NotebookResult:
    notebook: str
    exercises: list[ExerciseResult]
    assignment: str = ""
    official: bool = True  # False when graded without the sandbox (--no-sandbox) or by `check`
    errors: list[str] = field(default_factory=list)  # notebook-level problems, one line each
    seconds: float = 0.0
    # How to reproduce this grading: the seed of the hidden inputs, the device the tests ran on
    # (``device_note`` says why it differs from the one asked for) and the grader's fingerprint.
    seed: int | None = None
    device: str = ""
    device_note: str = ""
    fingerprint: str = ""
    notices: list[str] = field(default_factory=list)  # structural notices about the notebook, one line each

    def provenance(self) -> str:
        """One line: seed, device and grader, for every report format."""
        parts = []
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.device:
            parts.append(f"device {self.device}" + (f" ({self.device_note})" if self.device_note else ""))
        if self.fingerprint:
            parts.append(f"grader {self.fingerprint}")
        return ", ".join(parts)

    @property
    def score(self) -> float:
        return round(sum(e.score for e in self.exercises), 6)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "assignment": self.assignment,
            "score": self.score,
            "max_score": self.max_score,
            "official": self.official,
            "errors": list(self.errors),
            "notices": list(self.notices),
            "seed": self.seed,
            "device": self.device,
            "device_note": self.device_note,
            "fingerprint": self.fingerprint,
            "exercises": [e.to_json() for e in self.exercises],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "NotebookResult":
        exercises = [
            ExerciseResult(
                name=e["name"],
                score=e["score"],
                max_score=e["max_score"],
                status=e["status"],
                message=e.get("message", ""),
                tests=[TestResult(**t) for t in e["tests"]],
            )
            for e in data["exercises"]
        ]
        return cls(
            notebook=data["notebook"],
            assignment=data.get("assignment", ""),
            official=data.get("official", True),
            errors=list(data.get("errors", [])),
            exercises=exercises,
            notices=list(data.get("notices", [])),
            seed=data.get("seed"),
            device=data.get("device", ""),
            device_note=data.get("device_note", ""),
            fingerprint=data.get("fingerprint", ""),
        )


def exercise_status(tests: list[TestResult]) -> Status:
    """passed / partial / failed from test outcomes (other statuses are decided by the engine)."""
    if tests and all(t.passed for t in tests):
        return Status.PASSED
    if any(t.passed and t.points > 0 for t in tests):
        return Status.PARTIAL
    return Status.FAILED
