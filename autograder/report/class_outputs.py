"""What a batch writes: one JSON record per submission, and CSV tables over the class.

``<report>/submissions/<key>.json`` — written (atomically) as soon as the submission is graded,
so an interrupted batch resumes where it stopped::

    {"key", "path", "student", "assignment", "notebook", "status", "message", "sha256", "grader",
     "device", "seed", "depends", "seconds", "cpu": {"grader", "sandbox"}, "slot",
     "result": <NotebookResult JSON> | null, "late": {"seconds", "penalty"} (with a gradebook), "graded_at"}

(:meth:`BatchRecord.to_json <autograder.report.records.BatchRecord.to_json>`; every reader gets
:class:`~autograder.report.records.BatchRecord` objects back.)

``status`` is ``graded``, ``unusable`` (not a notebook, unknown assignment: the student's input)
or ``error`` (a grader failure, never the student's: graded again on the next run).

``<report>/tests.csv`` (a row per submission and hidden test), ``<report>/exercises.csv`` (a row
per submission and exercise) and ``<report>/submissions.csv`` (a row per submission).
"""

from __future__ import annotations

import csv
import datetime
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from autograder.report.records import BatchRecord
from autograder.safeio import row as safe_row

RECORDS = "submissions"


def record_path(report: Path, record_name: str) -> Path:
    return report / RECORDS / record_name


def read_record(path: Path) -> BatchRecord | None:
    """The record in ``path``; None when it cannot be read or is not a record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return BatchRecord.from_json(data) if isinstance(data, dict) else None
    except (OSError, KeyError, TypeError, ValueError):
        return None


def read_all(report: Path) -> dict[str, BatchRecord]:
    """Every record in the report folder, by key (unreadable files skipped)."""
    out: dict[str, BatchRecord] = {}
    folder = report / RECORDS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.is_symlink():
            continue
        record = read_record(path)
        if record is not None:
            out[record.key] = replace(record, file_name=path.name)  # the class report links to it
    return out


def write_record(path: Path, record: BatchRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = record.to_json()
    data["graded_at"] = record.graded_at or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _who(record: BatchRecord) -> list[Any]:
    assignment = record.assignment or (record.result.assignment if record.result is not None else "")
    return [record.key, record.student or "", assignment, record.notebook]


def _write(path: Path, header: list[str], rows: Iterable[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(safe_row(r) for r in rows)  # names and messages are the students': no formulas


def write_tables(report: Path, records: list[BatchRecord]) -> list[Path]:
    who = ["key", "student", "assignment", "notebook"]
    tests, exercises, submissions = [], [], []
    for record in records:
        result = record.result
        if result is None:
            submissions.append([*_who(record), record.status.value, "", "", record.message])
            continue
        submissions.append([*_who(record), record.status.value, result.score, result.max_score, "; ".join(result.errors)])
        for exercise in result.exercises:
            exercises.append([*_who(record), exercise.name, exercise.status.value, exercise.score,
                              exercise.max_score, exercise.message])
            for test in exercise.tests:
                tests.append([*_who(record), exercise.name, test.name, test.passed, test.points,
                              test.max_points, test.message])
    paths = [report / "tests.csv", report / "exercises.csv", report / "submissions.csv"]
    _write(paths[0], [*who, "exercise", "test", "passed", "points", "max_points", "message"], tests)
    _write(paths[1], [*who, "exercise", "status", "score", "max_score", "message"], exercises)
    _write(paths[2], [*who, "status", "score", "max_score", "problems"], submissions)
    return paths
