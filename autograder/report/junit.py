"""JUnit XML: one ``<testsuite>`` per exercise, one ``<testcase>`` per hidden test.

A failed test carries ``<failure message="first line" type="status">full message</failure>``.
Scores travel as ``<properties>``. ElementTree escapes markup; :func:`visible` has already removed
every character XML 1.0 forbids, so student text cannot make the document ill-formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from autograder.report.common import Results, as_list, clip, one_line, points, visible
from autograder.report.results import ExerciseResult, NotebookResult

MESSAGE_LIMIT = 10_000
ATTRIBUTE_LIMIT = 200


def _properties(parent: ET.Element, values: dict[str, object]) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=visible(value))


def _failure(testcase: ET.Element, message: str, kind: str) -> None:
    first = one_line(message.split("\n", 1)[0]) if message else kind
    failure = ET.SubElement(testcase, "failure", message=clip(first, ATTRIBUTE_LIMIT), type=visible(kind))
    failure.text = clip(visible(message), MESSAGE_LIMIT)


def _suite(parent: ET.Element, result: NotebookResult, exercise: ExerciseResult, name: str) -> None:
    tests = exercise.tests
    failures = sum(not t.passed for t in tests) if tests else int(exercise.status != "passed")
    suite = ET.SubElement(
        parent, "testsuite", name=name, tests=str(max(len(tests), 1)), failures=str(failures), errors="0", skipped="0"
    )
    _properties(
        suite,
        {
            "notebook": result.notebook,
            "assignment": result.assignment,
            "official": str(result.official).lower(),
            "seed": "" if result.seed is None else str(result.seed),
            "device": result.device + (f" ({result.device_note})" if result.device_note else ""),
            "grader": result.fingerprint,
            "status": exercise.status,
            "score": points(exercise.score),
            "max_score": points(exercise.max_score),
        },
    )
    if not tests:  # nothing ran: the exercise itself is the test case
        testcase = ET.SubElement(suite, "testcase", name=visible(exercise.name), classname=name)
        _properties(testcase, {"points": points(exercise.score), "max_points": points(exercise.max_score)})
        if exercise.status != "passed":
            _failure(testcase, exercise.message, exercise.status)
    for test in tests:
        testcase = ET.SubElement(suite, "testcase", name=visible(test.name), classname=name)
        _properties(testcase, {"points": points(test.points), "max_points": points(test.max_points)})
        if not test.passed:
            # A failed test without its own message (timeout, forbidden call) shows the exercise's.
            _failure(testcase, test.message or exercise.message, exercise.status)
    if exercise.message:
        ET.SubElement(suite, "system-out").text = clip(visible(exercise.message), MESSAGE_LIMIT)
    if result.errors or result.notices:
        ET.SubElement(suite, "system-err").text = "\n".join(visible(e) for e in [*result.notices, *result.errors])


def render(results: Results) -> str:
    items = as_list(results)
    root = ET.Element("testsuites", name="autograder")
    for result in items:
        for exercise in result.exercises:
            # Exercise names are unique within a notebook, not across several submissions.
            name = visible(exercise.name) if len(items) == 1 else f"{visible(result.notebook)}::{visible(exercise.name)}"
            _suite(root, result, exercise, name)
    suites = root.findall("testsuite")
    root.set("tests", str(sum(int(s.get("tests", "0")) for s in suites)))
    root.set("failures", str(sum(int(s.get("failures", "0")) for s in suites)))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
