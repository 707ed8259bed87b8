"""Markdown report, ready to post as a pull-request comment or a job summary.

A heading with the total, a score table, then a collapsible ``<details>`` per exercise that did not
pass, with its failing tests. Student text never reaches the Markdown or HTML parser as markup:
messages go into fenced code blocks whose fence is longer than any run of backticks inside them,
and short strings (names, table cells, headings) are escaped by :func:`inline`.
"""

from __future__ import annotations

import html
import re

from autograder.report.common import (
    UNOFFICIAL,
    Results,
    as_list,
    clip,
    failing_tests,
    fraction,
    one_line,
    visible,
)
from autograder.report.results import ExerciseResult, NotebookResult

MESSAGE_LIMIT = 800  # characters of one message; keeps a whole course under GitHub's comment limit

STATUS_EMOJI = {
    "passed": "✅",
    "partial": "🟡",
    "failed": "❌",
    "not_attempted": "⬜",
    "forbidden": "🚫",
    "error": "💥",
    "timeout": "⏱️",
}

# ASCII punctuation that means something to (GitHub-flavoured) Markdown inline; `<`, `>` and `&`
# are handled by HTML escaping instead, `@` and `#` so no one is mentioned and no issue linked.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~@])")
_BACKTICKS = re.compile(r"`+")


def inline(text: object) -> str:
    """One line of literal text, safe in a table cell, a heading or a list item."""
    return html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", one_line(text)), quote=False)


def code_block(text: str) -> str:
    """A fenced block that shows ``text`` literally, whatever it contains."""
    body = clip(visible(text).rstrip(), MESSAGE_LIMIT)
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{body}\n{fence}"


def _table(result: NotebookResult) -> list[str]:
    rows = ["| Exercise | Status | Score |", "|---|---|---:|"]
    for exercise in result.exercises:
        emoji = STATUS_EMOJI.get(exercise.status, "❓")
        rows.append(
            f"| {inline(exercise.name)} | {emoji} {inline(exercise.status)} | {fraction(exercise.score, exercise.max_score)} |"
        )
    rows.append(f"| **Total** | | **{fraction(result.score, result.max_score)}** |")
    return rows


def _details(exercise: ExerciseResult) -> list[str]:
    failing = failing_tests(exercise)
    what = f"{len(failing)} failing test{'s' if len(failing) != 1 else ''}" if failing else exercise.status
    summary = html.escape(f"{one_line(exercise.name)} — {one_line(what)} ({fraction(exercise.score, exercise.max_score)})")
    lines = ["<details>", f"<summary>{summary}</summary>", ""]
    if exercise.message:
        lines += [code_block(exercise.message), ""]
    for test in failing:
        lines += [f"**{inline(test.name)}** ({fraction(test.points, test.max_points)})", ""]
        if test.message:
            lines += [code_block(test.message), ""]
    lines.append("</details>")
    return lines


def _notebook(result: NotebookResult, level: str) -> list[str]:
    lines = [f"{level} Autograder: {inline(result.notebook)} — {fraction(result.score, result.max_score)}", ""]
    if not result.official:
        lines += [f"> **{inline(UNOFFICIAL)}**", ""]
    lines += _table(result) + [""]
    if result.provenance():
        lines += [f"<sub>Graded with {inline(result.provenance())}</sub>", ""]
    if result.notices:
        lines += ["**Notes on the notebook:**", ""]
        lines += [f"- {inline(clip(notice, MESSAGE_LIMIT))}" for notice in result.notices] + [""]
    if result.errors:
        lines += ["**Problems with the notebook:**", ""]
        lines += [f"- {inline(clip(error, MESSAGE_LIMIT))}" for error in result.errors] + [""]
    for exercise in result.exercises:
        if exercise.status != "passed":
            lines += _details(exercise) + [""]
    return lines


def render(results: Results) -> str:
    items = as_list(results)
    if len(items) == 1:
        return "\n".join(_notebook(items[0], "##"))
    total = fraction(sum(r.score for r in items), sum(r.max_score for r in items))
    lines = [f"## Autograder: {len(items)} notebooks — {total}", ""]
    for result in items:
        lines += _notebook(result, "###")
    return "\n".join(lines)
