"""Every report format, rendered from hand-built results: structure, values, and safety.

Messages carry student text, so the results below are full of it: table pipes, HTML, Markdown
fences, NUL and other control characters, terminal escapes, lone surrogates, bidirectional
overrides and non-ASCII. Each format is parsed back and checked, not just searched for strings.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.report import FORMATS, gradescope, junit, markdown, render, text
from autograder.report.common import one_line, visible
from autograder.report.results import ExerciseResult, NotebookResult
from autograder.report.results import TestResult as Outcome  # aliased: pytest would collect a Test* name

EVIL = (
    "bad | pipe <script>alert(1)</script> <img src=x onerror=alert(1)>\n"
    "| fake | table | row |\n"
    "```\n````` fence\n"
    "</details></summary># heading @everyone #1 [link](javascript:alert(1))\n"
    "nul\x00 bell\x07 esc\x1b[31mred\x1b[0m cr\rhidden del\x7f c1\x85 "
    "surrogate\ud800 nonchar\ufffe bidi\u202egnp.exe ]]> &amp; 'quotes\" "
    "é ü 中文 🙂"
)
# What XML 1.0 allows; visible() must leave nothing else.
XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _tests(exercise: str, outcomes: list[tuple[bool, float, float, str]]) -> list[Outcome]:
    return [Outcome(f"test_{exercise}_{i}", ok, pts, mx, msg) for i, (ok, pts, mx, msg) in enumerate(outcomes)]


def make_result(message: str = EVIL, official: bool = True) -> NotebookResult:
    """One exercise in each status; student text in every place a message can be."""
    return NotebookResult(
        notebook="linear_models.ipynb",
        assignment="01_linear_models",
        official=official,
        errors=[f"cell 4 could not be parsed: {message}"],
        exercises=[
            ExerciseResult("softmax", 10, 10, "passed", _tests("softmax", [(True, 4, 4, ""), (True, 6, 6, "")])),
            ExerciseResult(
                "cross_entropy", 7.5, 10, "partial", _tests("cross_entropy", [(True, 7.5, 7.5, ""), (False, 0, 2.5, message)])
            ),
            ExerciseResult(
                "dropout", 0, 10, "failed", _tests("dropout", [(False, 0, 4, message), (False, 0, 6, "plain failure")])
            ),
            ExerciseResult(
                "corr2d", 0, 10, "forbidden", _tests("corr2d", [(False, 0, 10, "")]), message=f"calls torch.conv2d: {message}"
            ),
            ExerciseResult("clip_grad", 0, 10, "timeout", [], message="timed out after 20 s"),
            ExerciseResult("adam_step", 0, 10, "not_attempted", [], message="raise NotImplementedError()"),
            ExerciseResult(
                "q_learning_update",
                0,
                10,
                "error",
                _tests("q_learning_update", [(False, 0, 10, f"ZeroDivisionError: {message}")]),
            ),
        ],
    )


def clean_result() -> NotebookResult:
    return NotebookResult(
        notebook="rl.ipynb",
        assignment="07_rl",
        exercises=[
            ExerciseResult(
                "q_learning_update",
                3.5,
                10,
                "partial",
                [
                    Outcome("test_update", True, 2, 2),
                    Outcome("test_terminal", False, 0, 2, "Q[0, 1] is 1.5, expected 1.0 (up to 1e-07 allowed)"),
                    Outcome("test_td_error", True, 1.5, 1.5),
                ],
            )
        ],
    )


# ---------------------------------------------------------------- shared safety


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x00", "\\x00"),
        ("\x1b", "\\x1b"),
        ("\r", "\\x0d"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\ud800", "\\ud800"),
        ("\ufffe", "\\ufffe"),
        ("\u202e", "\\u202e"),
        ("a\r\nb", "a\nb"),
        ("a\tb\nc", "a\tb\nc"),
        ("é中🙂", "é中🙂"),
    ],
)
def test_visible_escapes_what_could_break_a_format_and_keeps_the_rest(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_visible_output_is_legal_xml_and_utf8() -> None:
    shown = visible(EVIL)
    assert not XML_ILLEGAL.search(shown.replace("\r", ""))
    assert "\r" not in shown
    shown.encode("utf-8")  # no lone surrogate left


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_one_result_and_a_list(fmt: str) -> None:
    for results in (make_result(), [make_result(), clean_result()]):
        out = render(results, fmt)
        assert isinstance(out, str) and out
        assert "\x00" not in out and "\x1b" not in out and "\ud800" not in out
        out.encode("utf-8")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        render(clean_result(), "pdf")


# ---------------------------------------------------------------- JSON


def test_json_is_exactly_the_result_model() -> None:
    result = clean_result()
    data = json.loads(render(result, "json"))
    assert data == result.to_json()
    assert NotebookResult.from_json(data) == result


def test_json_structure_and_values() -> None:
    result = make_result()
    data = json.loads(render(result, "json"))
    assert {"notebook", "score", "max_score", "exercises"} <= data.keys()
    assert (data["notebook"], data["score"], data["max_score"]) == ("linear_models.ipynb", 17.5, 70)
    assert [e["name"] for e in data["exercises"]] == [e.name for e in result.exercises]
    for exercise, expected in zip(data["exercises"], result.exercises, strict=True):
        assert {"name", "score", "max_score", "status", "tests"} <= exercise.keys()
        assert (exercise["score"], exercise["max_score"], exercise["status"]) == (
            expected.score,
            expected.max_score,
            expected.status,
        )
        for test, want in zip(exercise["tests"], expected.tests, strict=True):
            assert set(test) == {"name", "passed", "points", "max_points", "message"}
            assert (test["name"], test["passed"], test["points"], test["max_points"]) == (
                want.name,
                want.passed,
                want.points,
                want.max_points,
            )
            assert test["message"] == visible(want.message)
    message = data["exercises"][1]["tests"][1]["message"]
    assert "<script>alert(1)</script>" in message and "中文 🙂" in message and "nul\\x00" in message


def test_json_of_several_notebooks_is_one_object_with_totals() -> None:
    data = json.loads(render([make_result(), clean_result()], "json"))
    assert (data["score"], data["max_score"]) == (21, 80)
    assert [n["notebook"] for n in data["notebooks"]] == ["linear_models.ipynb", "rl.ipynb"]


def test_json_refuses_a_non_finite_score_rather_than_write_invalid_json() -> None:
    result = clean_result()
    result.exercises[0].score = float("nan")
    with pytest.raises(ValueError):
        render(result, "json")


# ---------------------------------------------------------------- Gradescope


def test_gradescope_schema() -> None:
    result = make_result()
    data = json.loads(render(result, "gradescope"))
    assert set(data) == {"score", "output", "tests", "visibility", "stdout_visibility"}
    assert data["score"] == result.score == 17.5
    assert data["visibility"] in {"visible", "hidden", "after_due_date", "after_published"}
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in {"passed", "failed"}
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
    assert sum(t["score"] for t in data["tests"]) == data["score"]
    assert sum(t["max_score"] for t in data["tests"]) == result.max_score


def test_gradescope_tests_and_messages() -> None:
    data = json.loads(render(make_result(), "gradescope"))
    by_name = {t["name"]: t for t in data["tests"]}
    assert by_name["softmax: test_softmax_0"]["status"] == "passed"
    failed = by_name["cross_entropy: test_cross_entropy_1"]
    assert (failed["status"], failed["score"], failed["max_score"]) == ("failed", 0, 2.5)
    assert failed["output"] == visible(EVIL)
    # A failed test without its own message shows the exercise's (here: the forbidden call).
    assert by_name["corr2d: test_corr2d_0"]["output"].startswith("calls torch.conv2d")
    # Exercises without test results are one test each, with the exercise's points and message.
    assert by_name["clip_grad"] == {
        "name": "clip_grad",
        "score": 0,
        "max_score": 10,
        "status": "failed",
        "output": "timed out after 20 s",
        "visibility": "visible",
    }
    assert "UNOFFICIAL" not in data["output"]
    assert "UNOFFICIAL" in json.loads(gradescope.render(make_result(official=False)))["output"]


def test_gradescope_merges_several_notebooks_with_prefixed_names() -> None:
    data = json.loads(render([make_result(), clean_result()], "gradescope"))
    assert data["score"] == 21
    assert "rl.ipynb: q_learning_update: test_terminal" in {t["name"] for t in data["tests"]}


# ---------------------------------------------------------------- JUnit


def _parse_xml(out: str) -> ET.Element:
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert not XML_ILLEGAL.search(out)
    return ET.fromstring(out.encode("utf-8"))


def _properties(element: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in element.findall("properties/property")}


def test_junit_one_suite_per_exercise_one_case_per_test() -> None:
    result = make_result()
    root = _parse_xml(render(result, "junit"))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [e.name for e in result.exercises]
    for suite, exercise in zip(suites, result.exercises, strict=True):
        cases = suite.findall("testcase")
        expected_cases = [t.name for t in exercise.tests] or [exercise.name]
        assert [c.get("name") for c in cases] == expected_cases
        assert all(c.get("classname") == exercise.name for c in cases)
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)
        props = _properties(suite)
        assert float(props["score"]) == exercise.score and float(props["max_score"]) == exercise.max_score
        assert props["status"] == exercise.status and props["notebook"] == "linear_models.ipynb"
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    assert int(root.get("failures")) == 7


def test_junit_failures_carry_the_message() -> None:
    root = _parse_xml(render(make_result(), "junit"))
    case = root.find("testsuite[@name='cross_entropy']/testcase[@name='test_cross_entropy_1']")
    failure = case.find("failure")
    assert failure.get("message") == "bad | pipe <script>alert(1)</script> <img src=x onerror=alert(1)>"
    assert failure.get("type") == "partial"
    assert failure.text == visible(EVIL)
    assert _properties(case) == {"points": "0", "max_points": "2.5"}
    passed = root.find("testsuite[@name='softmax']/testcase[@name='test_softmax_0']")
    assert passed.find("failure") is None
    timeout = root.find("testsuite[@name='clip_grad']/testcase[@name='clip_grad']/failure")
    assert (timeout.get("type"), timeout.text) == ("timeout", "timed out after 20 s")


def test_junit_of_several_notebooks_names_suites_by_notebook() -> None:
    root = _parse_xml(junit.render([make_result(), clean_result()]))
    assert "rl.ipynb::q_learning_update" in [s.get("name") for s in root.findall("testsuite")]


# ---------------------------------------------------------------- Markdown

GOLDEN_MARKDOWN = """\
## Autograder: rl\\.ipynb — 3.5 / 10

| Exercise | Status | Score |
|---|---|---:|
| q\\_learning\\_update | 🟡 partial | 3.5 / 10 |
| **Total** | | **3.5 / 10** |

<details>
<summary>q_learning_update — 1 failing test (3.5 / 10)</summary>

**test\\_terminal** (0 / 2)

```text
Q[0, 1] is 1.5, expected 1.0 (up to 1e-07 allowed)
```

</details>
"""


def test_markdown_golden() -> None:
    assert render(clean_result(), "markdown") == GOLDEN_MARKDOWN


def _markdown_html(out: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")  # installed with rich
    # As on GitHub: tables, and raw HTML passed through (GitHub then sanitises, we must not rely on it).
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(out)


def test_markdown_table_stays_well_formed_and_no_html_is_injected() -> None:
    result = make_result()
    result.exercises[0].name = "soft|max <b>x</b>"
    out = render(result, "markdown")
    page = _markdown_html(out)
    rows = re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)
    assert len(rows) == 1 + len(result.exercises) + 1  # header, exercises, total
    assert all(len(re.findall(r"<t[hd]", row)) == 3 for row in rows)
    assert "soft|max &lt;b&gt;x&lt;/b&gt;" in rows[1]
    for tag in ("<script", "<img", "<b>", "<a href", "<h1"):
        assert tag not in page
    assert page.count("<details>") == page.count("</details>") == 6  # every exercise that did not pass


def test_markdown_messages_are_shown_literally_in_code_blocks() -> None:
    page = _markdown_html(render(make_result(), "markdown"))
    blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", page, flags=re.S)
    shown = [html.unescape(b).rstrip("\n") for b in blocks]
    assert visible(EVIL) in shown  # the whole message survived, fences, pipes and all
    assert f"ZeroDivisionError: {visible(EVIL)}" in shown
    assert "timed out after 20 s" in shown


def test_markdown_fence_is_longer_than_any_backtick_run() -> None:
    assert markdown.code_block("a ````` b").startswith("``````text\n")
    assert markdown.code_block("plain").startswith("```text\n")


def test_markdown_inline_escapes_mentions_links_and_html() -> None:
    assert markdown.inline("@team #1 [x](y) <i> a|b\nc") == "\\@team \\#1 \\[x\\]\\(y\\) &lt;i&gt; a\\|b c"


def test_markdown_marks_unofficial_results() -> None:
    assert "UNOFFICIAL" in render(make_result(official=False), "markdown")
    assert "UNOFFICIAL" not in render(make_result(), "markdown")


def test_markdown_of_several_notebooks_has_a_total_heading() -> None:
    out = render([make_result(), clean_result()], "markdown")
    assert out.startswith("## Autograder: 2 notebooks — 21 / 80\n")
    assert out.count("\n### Autograder: ") == 2


# ---------------------------------------------------------------- text


def test_text_table_and_failure_details() -> None:
    out = render(make_result(), "text")
    for exercise, status, score in [
        ("softmax", "passed", "10 / 10"),
        ("cross_entropy", "partial", "7.5 / 10"),
        ("dropout", "failed", "0 / 10"),
        ("corr2d", "forbidden", "0 / 10"),
        ("clip_grad", "timeout", "0 / 10"),
        ("adam_step", "not_attempted", "0 / 10"),
        ("q_learning_update", "error", "0 / 10"),
    ]:
        assert re.search(rf"{exercise}\s+\S+ {status}\s+{score}", out), exercise
    assert re.search(r"Total\s+17\.5 / 70", out)
    # Failing tests of the exercises that did not pass, with their messages; passing tests are not listed.
    assert "test_cross_entropy_1 (0 / 2.5)" in out and "test_dropout_1 (0 / 6)" in out and "plain failure" in out
    assert "test_cross_entropy_0" not in out and "test_softmax_0" not in out
    assert "timed out after 20 s" in out and "calls torch.conv2d" in out
    assert "<script>alert(1)</script>" in out and "中文 🙂" in out and "esc\\x1b[31mred" in out
    assert "UNOFFICIAL" not in out


def test_text_is_plain_without_color_even_when_the_environment_forces_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "20")
    out = text.render(make_result())
    assert "\x1b" not in out and "\x00" not in out and "\x07" not in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_text_with_color_styles_but_never_passes_student_escapes() -> None:
    out = text.render(make_result(), color=True)
    assert "\x1b[" in out  # our styles
    assert "\x1b[31mred" not in out and "esc\\x1b[31mred" in out


def test_text_marks_unofficial_results() -> None:
    out = render(make_result(official=False), "text")
    assert out.startswith("UNOFFICIAL")
    assert "[UNOFFICIAL]" in out


def test_text_of_several_notebooks_ends_with_a_summary() -> None:
    out = render([make_result(), clean_result()], "text")
    summary = out[out.index("Summary") :]
    assert re.search(r"linear_models\.ipynb\s+17\.5 / 70", summary)
    assert re.search(r"rl\.ipynb\s+3\.5 / 10", summary)


# ---------------------------------------------------------------- any student text, every format


# Hypothesis never draws surrogates by itself, and the characters that matter are rare: add them.
TRICKY = st.sampled_from(
    list("|<>`&@#[]()*_\\!~\n\r\t\x00\x1b\x07\x7f\x85") + ["\ud800", "\udc80", "\ufffe", "\u202e", "</details>", "```"]
)
STUDENT_TEXT = st.lists(st.one_of(st.text(max_size=6), TRICKY), max_size=15).map("".join)


@settings(max_examples=40, deadline=None)
@given(STUDENT_TEXT, STUDENT_TEXT)
def test_no_student_text_breaks_any_format(message: str, name: str) -> None:
    result = make_result(message)
    result.notebook = result.exercises[0].name = name
    data = json.loads(render(result, "json"))
    assert data["exercises"][1]["tests"][1]["message"] == visible(message)
    assert json.loads(render(result, "gradescope"))["tests"][3]["output"] == visible(message)
    root = _parse_xml(render(result, "junit"))
    assert len(root.findall("testsuite/testcase")) == 10
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", render(result, "text"))
    page = _markdown_html(render(result, "markdown"))
    rows = re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)
    assert len(rows) == 9 and all(len(re.findall(r"<t[hd]", row)) == 3 for row in rows)
    cells = [html.unescape(re.sub(r"<[^>]*>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[1], flags=re.S)]
    assert cells == [one_line(name), "✅ passed", "10 / 10"]  # the name is shown as it is, in its own cell
    assert page.count("<details>") == page.count("</details>") == 6
