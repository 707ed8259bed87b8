"""The class report an instructor reads: students by name with their flags and lateness, who needs a
look and why, failing tests with a hang counted once, captions once, and every record of the folder."""

from __future__ import annotations

import re
from pathlib import Path

from autograder.report import class_outputs as outputs
from autograder.report import class_report, flags


def _exercise(name: str, status: str, tests: list[tuple[str, bool, str]], message: str = "") -> dict:
    return {"name": name, "score": sum(2 for _, ok, _ in tests if ok), "max_score": 2 * len(tests), "status": status,
            "message": message, "tests": [{"name": t, "passed": ok, "points": 2 if ok else 0, "max_points": 2,
                                           "message": m} for t, ok, m in tests]}


def _record(student: str, *exercises: dict, errors: list[str] | None = None, **extra: object) -> dict:
    result = {"notebook": "linear_models.ipynb", "assignment": "01_linear_models", "official": True,
              "errors": errors or [], "exercises": list(exercises)}
    result["score"] = sum(e["score"] for e in exercises)
    result["max_score"] = sum(e["max_score"] for e in exercises)
    return {"key": f"{student}/01_linear_models/linear_models.ipynb", "student": student,
            "assignment": "01_linear_models", "notebook": "linear_models.ipynb", "status": "graded",
            "result": result, **extra}


TESTS = ["test_values", "test_gradient", "test_stability"]
HANG = "timed out: the call did not return within 20 s"


def _class() -> list[dict]:
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
        {"key": "dee/01_linear_models/linear_models.ipynb", "student": "dee", "assignment": "01_linear_models",
         "status": "unusable", "message": "linear_models.ipynb: not a notebook (the file is not JSON)", "result": None},
        {"key": "eve/01_linear_models/linear_models.ipynb", "student": "eve", "assignment": "01_linear_models",
         "status": "error", "message": "internal grader error (not the student's fault): OSError", "result": None},
    ]


def test_students_are_named_with_totals_flags_late_and_links(tmp_path: Path) -> None:
    records = _class()
    for record in records:
        outputs.write_record(tmp_path / outputs.RECORDS / f"{record['student']}.json", record)
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
    found = flags.from_result(_class()[1]["result"])
    assert [(f.kind, f.exercise) for f in found] == [("forbidden", "softmax"), ("timed out", "cross_entropy")]
    comment = "No response.\n" + "\n".join(f.comment() for f in found)
    assert flags.parse(comment) == [("forbidden", "softmax"), ("timed out", "cross_entropy")]
    assert flags.summary(flags.parse(comment)) == "forbidden: softmax; timed out: cross_entropy"
