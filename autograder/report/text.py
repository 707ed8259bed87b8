"""Terminal report (rich): a table per notebook, then what failed and why.

Every dynamic string goes into a ``rich.text.Text`` (never parsed as markup) after
:func:`~autograder.report.common.visible`, so student text can neither style the output nor send
escape sequences to the terminal.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from autograder.report.common import (
    UNOFFICIAL,
    Results,
    as_list,
    clip,
    failing_tests,
    fraction,
    visible,
)
from autograder.report.results import ExerciseResult, NotebookResult

MESSAGE_LIMIT = 2000  # characters of one message shown in the terminal

STATUS_STYLE = {
    "passed": ("✔", "green"),
    "partial": ("◐", "yellow"),
    "failed": ("✘", "red"),
    "not_attempted": ("·", "dim"),
    "forbidden": ("⊘", "magenta"),
    "error": ("!", "red"),
    "timeout": ("⏱", "red"),
}


def _status(status: str) -> Text:
    mark, style = STATUS_STYLE.get(status, ("?", "red"))
    return Text(f"{mark} {visible(status)}", style=style)


def _table(result: NotebookResult) -> Table:
    title = Text(visible(result.notebook), style="bold")
    if result.assignment:
        title.append(f"  ({visible(result.assignment)})", style="dim")
    if not result.official:
        title.append("  [UNOFFICIAL]", style="bold red")
    table = Table(title=title, box=box.SIMPLE_HEAVY, show_footer=True)
    table.add_column("Exercise", footer=Text("Total", style="bold"))
    table.add_column("Status")
    table.add_column("Score", justify="right", footer=Text(fraction(result.score, result.max_score), style="bold"))
    for exercise in result.exercises:
        table.add_row(Text(visible(exercise.name)), _status(exercise.status), Text(fraction(exercise.score, exercise.max_score)))
    return table


def _indented(message: str, indent: str) -> str:
    return "\n".join(indent + row for row in clip(visible(message).rstrip(), MESSAGE_LIMIT).split("\n"))


def _details(exercise: ExerciseResult) -> list[RenderableType]:
    heading = Text()
    heading.append(visible(exercise.name), style="bold")
    heading.append(f" — {visible(exercise.status)} ({fraction(exercise.score, exercise.max_score)})")
    parts: list[RenderableType] = [Text(""), heading]
    if exercise.message:
        parts.append(Text(_indented(exercise.message, "    ")))
    for test in failing_tests(exercise):
        line = Text("  ✘ ", style="red")
        line.append(visible(test.name))
        line.append(f" ({fraction(test.points, test.max_points)})", style="dim")
        parts.append(line)
        if test.message:
            parts.append(Text(_indented(test.message, "      ")))
    return parts


def _notebook(result: NotebookResult) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if not result.official:
        parts.append(Text(UNOFFICIAL, style="bold red"))
    parts.append(_table(result))
    if result.provenance():
        parts.append(Text(f"Graded with {visible(result.provenance())}", style="dim"))
    if result.notices:
        parts.append(Text("Notes on the notebook:", style="bold"))
        parts.extend(Text("  - " + _indented(notice, "    ")[4:]) for notice in result.notices)
    if result.errors:
        parts.append(Text("Problems with the notebook:", style="bold red"))
        parts.extend(Text("  - " + _indented(error, "    ")[4:]) for error in result.errors)
    for exercise in result.exercises:
        if exercise.status != "passed":
            parts.extend(_details(exercise))
    return parts


def summary_table(results: list[NotebookResult]) -> Table:
    """One row per notebook: the score and how many exercises ended in each status."""
    table = Table(title=Text("Summary", style="bold"), box=box.SIMPLE_HEAVY)
    table.add_column("Notebook")
    table.add_column("Score", justify="right")
    table.add_column("Exercises")
    table.add_column("Official")
    for result in results:
        counts: dict[str, int] = {}
        for exercise in result.exercises:
            counts[exercise.status] = counts.get(exercise.status, 0) + 1
        statuses = ", ".join(f"{n} {visible(status)}" for status, n in counts.items())
        official = Text("yes", style="green") if result.official else Text("UNOFFICIAL", style="bold red")
        table.add_row(Text(visible(result.notebook)), Text(fraction(result.score, result.max_score)), Text(statuses), official)
    return table


def to_string(renderable: RenderableType, *, color: bool = False, width: int = 100) -> str:
    """Render with rich into a string; ANSI styles only when ``color`` is true."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        markup=False,
        emoji=False,
        highlight=False,
        legacy_windows=False,
    )
    console.print(renderable)
    return buffer.getvalue()


def banner(line: str, *, color: bool = False) -> str:
    """One warning line in bold red."""
    return to_string(Text(visible(line), style="bold red"), color=color)


def render(results: Results, *, color: bool = False, width: int = 100) -> str:
    """The terminal report of one notebook, or of several followed by a summary table."""
    items = as_list(results)
    parts: list[RenderableType] = []
    for i, result in enumerate(items):
        if i:
            parts.append(Text(""))
        parts.extend(_notebook(result))
    if len(items) > 1:
        parts.extend([Text(""), summary_table(items)])
    return to_string(Group(*parts), color=color, width=width)
