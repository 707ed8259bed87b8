"""The class report an instructor reads: students by name with their flags and lateness, who needs a
look and why, failing tests with a hang counted once, captions once, and every record of the folder."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from autograder.report import class_outputs as outputs
from autograder.report import class_report, flags
from autograder.report.records import BatchRecord, Lateness, RecordStatus


def _exercise(name: str, status: str, tests: list[tuple[str, bool, str]], message: str = "") -> dict:
    return {"name": name, "score": sum(2 for _, ok, _ in tests if ok), "max_score": 2 * len(tests), "status": status,
            "message": message, "tests": [{"name": t, "passed": ok, "points": 2 if ok else 0, "max_points": 2,
                                           "message": m} for t, ok, m in tests]}


def _record(student: str, *exercises: dict, errors: list[str] | None = None, **extra: object) -> BatchRecord:
    result = {"notebook": "linear_models.ipynb", "assignment": "01_linear_models", "official": True,
              "errors": errors or [], "exercises": list(exercises)}
    result["score"] = sum(e["score"] for e in exercises)
    result["max_score"] = sum(e["max_score"] for e in exercises)
    return BatchRecord.from_json({"key": f"{student}/01_linear_models/linear_models.ipynb", "student": student,
                                  "assignment": "01_linear_models", "notebook": "linear_models.ipynb",
                                  "status": "graded", "result": result, **extra})


TESTS = ["test_values", "test_gradient", "test_stability"]
HANG = "timed out: the call did not return within 20 s"


def _class() -> list[BatchRecord]:
    good = [(t, True, "") for t in TESTS]
    return [
        _record("ann", _exercise("softmax", "passed", good), _exercise("cross_entropy", "passed", good),
                late={"seconds": 2 * 86400, "penalty": 2.4}),
        _record("bob", _exercise("softmax", "forbidden", good, "uses a forbidden routine: torch.softmax"),
                _exercise("cross_entropy", "timeout", [(t, False, HANG) for t in TESTS])),
        _record("cy", _exercise("softmax", "partial", [("test_values", True, ""), ("test_gradient", False, "off by 0.5"),
                                                      ("test_stability", True, "")]),
                _exercise("cross_entropy", "passed", good),
                errors=["for review: recorder tampering (cell 3, line 1: `torch.overrides`), outside the graded functions"]),
        BatchRecord.from_json({"key": "dee/01_linear_models/linear_models.ipynb", "student": "dee",
                               "assignment": "01_linear_models", "status": "unusable",
                               "message": "linear_models.ipynb: not a notebook (the file is not JSON)", "result": None}),
        BatchRecord.from_json({"key": "eve/01_linear_models/linear_models.ipynb", "student": "eve",
                               "assignment": "01_linear_models", "status": "error",
                               "message": "internal grader error (not the student's fault): OSError", "result": None}),
    ]


def test_students_are_named_with_totals_flags_late_and_links(tmp_path: Path) -> None:
    records = _class()
    for record in records:
        outputs.write_record(tmp_path / outputs.RECORDS / f"{record.student}.json", record)
    page = class_report.render(list(outputs.read_all(tmp_path).values()))
    table = page[page.index("<table class=sortable>"):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert [re.search(r">(\w+)</a>", row).group(1) for row in rows[1:]] == ["ann", "bob", "cy", "dee", "eve"]
    assert 'href="submissions/ann.json"' in rows[1] and "12 / 12" in rows[1] and "2.0 days (−2.4)" in rows[1]
    assert "forbidden: softmax; timed out: cross_entropy" in rows[2]
    assert "for review" in rows[3] and "unusable" in rows[4] and "grader error" in rows[5]
    assert "<th>softmax</th>" in rows[0] and "<th>late</th>" in rows[0]
    assert "table.sortable" in page and "http" not in page  # sorting in the page itself, nothing fetched


def test_who_needs_a_look_is_listed_by_name_with_the_reason() -> None:
    page = class_report.render(_class())
    look = page[page.index("<h2>Needs a look</h2>"):page.index("<h2>Most frequent failing tests</h2>")]
    for title, student, reason in (("Forbidden calls: 1", "bob", "torch.softmax"), ("Timed out: 1", "bob", "timed out"),
                                   ("For review", "cy", "recorder tampering"), ("Unusable submissions", "dee", "not JSON"),
                                   ("Grader errors", "eve", "OSError")):
        section = look[look.index(title):]
        section = section[:section.index("</table>")]
        assert student in section and reason in section, title


def test_a_hang_counts_once_in_the_failing_tests() -> None:
    page = class_report.render(_class())
    ranking = page[page.index("<h2>Most frequent failing tests</h2>"):]
    assert "(timed out or crashed)" in ranking and "1 / 1" in ranking
    assert ranking.count("<tr><td>cross_entropy</td>") == 1  # not one row per test the hang took down
    assert "test_gradient" in ranking  # cy's real failure


def test_each_chart_has_one_caption() -> None:
    page = class_report.render(_class())
    assert page.count("<figcaption>softmax</figcaption>") == 1
    assert page.count("<figure>") == page.count("<figcaption>") == 3  # the total and two exercises


def test_flags_survive_the_gradebook_comment_round_trip() -> None:
    found = flags.from_result(_class()[1].result)
    assert [(f.kind, f.exercise) for f in found] == [("forbidden", "softmax"), ("timed out", "cross_entropy")]
    comment = "No response.\n" + "\n".join(f.comment() for f in found)
    assert flags.parse(comment) == [("forbidden", "softmax"), ("timed out", "cross_entropy")]
    assert flags.summary(flags.parse(comment)) == "forbidden: softmax; timed out: cross_entropy"


def _on_disk(**fields: object) -> dict:
    """A record as ``grade-batch`` writes it: every key, in its order."""
    return {"key": "ann/01_linear_models/linear_models.ipynb", "path": "/course/submitted/ann/01_linear_models/linear_models.ipynb",
            "student": "ann", "assignment": "01_linear_models", "notebook": "linear_models.ipynb", "status": "graded",
            "message": "", "sha256": "ab" * 32, "grader": "0123456789abcdef", "device": "cpu", "seed": 1234,
            "depends": {"points": "1" * 16, "hidden suites": "2" * 16, "reference": "3" * 16}, "seconds": 1.25,
            "cpu": {"grader": 0.5, "sandbox": 0.75}, "slot": 3, "result": None, **fields,
            "graded_at": "2024-06-11T10:00:00+00:00"}


def test_a_graded_record_round_trips_typed_and_keeps_its_json() -> None:
    result = _class()[2].result
    assert result is not None
    data = _on_disk(result=result.to_json(), late={"seconds": 3600.0, "penalty": 0.5})
    record = BatchRecord.from_json(data)
    assert record.status is RecordStatus.GRADED and record.graded == result
    assert record.result is not None and record.result.exercises[0].tests[1].message == "off by 0.5"
    assert record.late == Lateness(3600.0, 0.5) and record.cpu == {"grader": 0.5, "sandbox": 0.75}
    assert record.to_json() == data and list(record.to_json()) == list(data)  # the same keys, in the same order
    assert BatchRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize("status, message", [("unusable", "linear_models.ipynb: not a notebook (the file is not JSON)"),
                                             ("error", "internal grader error (not the student's fault): OSError")])
def test_a_record_without_a_result_round_trips_typed(status: str, message: str) -> None:
    data = _on_disk(status=status, message=message)
    record = BatchRecord.from_json(data)
    assert record.status == status and record.result is None and record.graded is None and record.late is None
    assert record.to_json() == data and "late" not in record.to_json()
    assert BatchRecord.from_json(record.to_json()) == record


def test_records_read_back_from_disk_are_typed_and_bad_files_are_skipped(tmp_path: Path) -> None:
    written = [*_class(), replace(_class()[0], key="fay/01_linear_models/linear_models.ipynb", student="fay",
                                  graded_at="2024-06-11T10:00:00+00:00")]
    for record in written:
        outputs.write_record(tmp_path / outputs.RECORDS / f"{record.student}.json", record)
    (tmp_path / outputs.RECORDS / "status.json").write_text(json.dumps({**_on_disk(), "status": "lost"}))
    (tmp_path / outputs.RECORDS / "key.json").write_text(json.dumps({**_on_disk(), "key": None}))
    (tmp_path / outputs.RECORDS / "garbage.json").write_text("not JSON")
    found = outputs.read_all(tmp_path)
    assert sorted(found) == sorted(r.key for r in written)
    for record in written:
        back = found[record.key]
        assert back.file_name == f"{record.student}.json" and back.graded_at  # stamped when first written
        assert replace(back, graded_at=record.graded_at) == record  # typed, as written
    assert found["fay/01_linear_models/linear_models.ipynb"].graded_at == "2024-06-11T10:00:00+00:00"  # kept
    assert outputs.read_record(tmp_path / outputs.RECORDS / "status.json") is None
