"""The class report: one self-contained HTML page over a batch's results.

Built from every record in the report folder (a run on some submissions updates their rows and
keeps the others). Per assignment: the students' table (name, total, each exercise's score, status
flags, lateness; sortable by any column, each row linking to its JSON record), the distribution of
the totals and of each exercise's scores (matplotlib histograms, embedded as PNG), mean, median,
full and zero marks and statuses. Then who needs a look, by name: forbidden calls, tampering noted
for review, time-outs, grader errors and unusable submissions, each with the reason; and the hidden
tests that fail most often, with their most frequent messages (numbers folded so that the same
mistake on different random inputs counts once; a hang or crash of an exercise counts once, not
once per test it took down). Everything that comes from a submission is HTML-escaped.
"""

from __future__ import annotations

import base64
import collections
import html
import io
import re
import statistics
from pathlib import Path
from typing import Any

from autograder.course import registry
from autograder.report import flags as flagging
from autograder.report.records import BatchRecord, Lateness, RecordStatus
from autograder.report.results import STATUSES, ExerciseResult, NotebookResult, Status, TestResult

TOP_TESTS = 15
MESSAGES_PER_TEST = 3
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1, h2, h3 { font-weight: 600; } table { border-collapse: collapse; margin: .5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; } figure { margin: 0; }
figcaption { font-size: .9em; color: #555; } pre { white-space: pre-wrap; margin: 0; font-size: .85em; }
th.sort { cursor: pointer; } th.sort:after { content: " \\2195"; color: #999; } .flag { color: #a33; }
"""
#: Click a header to sort its table by that column (numbers numerically); no external script.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.classList.add("sort");
    th.addEventListener("click", function () {
      var rows = Array.from(table.querySelectorAll("tr")).slice(1);
      var up = th.dataset.order !== "up"; th.dataset.order = up ? "up" : "down";
      rows.sort(function (a, b) {
        var x = a.children[column].dataset.v || a.children[column].textContent;
        var y = b.children[column].dataset.v || b.children[column].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return up ? c : -c;
      });
      rows.forEach(function (row) { table.appendChild(row); });
    });
  });
});
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _points(value: float) -> str:
    return f"{value:g}"


def _histogram(scores: list[float], max_score: float, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(4.2, 2.6), dpi=90)
    top = max(max_score, max(scores, default=0), 1)
    if top <= 30:  # one bar per point, centred on it
        edges = [k - 0.5 for k in range(int(top) + 2)]
    else:
        edges = [top * k / 20 for k in range(21)]
    axes.hist(scores, bins=edges, color="#4a7ab5", edgecolor="white")
    axes.set_xlabel("points")
    axes.set_ylabel("submissions")
    axes.yaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(scores: list[float], max_score: float, title: str) -> str:
    png = _histogram(scores, max_score, title)
    return (f'<figure><img alt="{_esc(title)}: score distribution" src="data:image/png;base64,{png}">'
            f"<figcaption>{_esc(title)}</figcaption></figure>")


def _fold(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    return _NUMBER.sub("#", first)[:300]


def _who(record: BatchRecord) -> str:
    return record.student or record.key


def _link(record: BatchRecord, text: str) -> str:
    target = record.file_name
    return f'<a href="submissions/{_esc(target)}">{_esc(text)}</a>' if target else _esc(text)


def _flags(record: BatchRecord) -> list[flagging.Flag]:
    if record.graded is not None:
        return flagging.from_result(record.graded)
    return flagging.for_failure(record.status.value, record.message)


def _late(record: BatchRecord) -> tuple[str, float]:
    late = record.late or Lateness()
    if late.seconds <= 0:
        return "", 0.0
    return f"{late.seconds / 86400:.1f} days" + (f" (−{_points(late.penalty)})" if late.penalty else ""), late.seconds


def _students_table(assignment: str, group: list[BatchRecord]) -> str:
    names = [e.name for e in registry.assignments().get(assignment, [])]
    for record in group:
        for exercise in record.result.exercises if record.result is not None else []:
            if exercise.name not in names:
                names.append(exercise.name)
    head = "".join(f"<th>{_esc(n)}</th>" for n in ["student", "total", *names, "status", "late"])
    rows = []
    for record in sorted(group, key=_who):
        result = record.graded
        scores = {e.name: e for e in (result.exercises if result is not None else [])}
        cells = [f"<td>{_link(record, _who(record))}</td>"]
        if result is not None:
            cells.append(f'<td class=n data-v="{result.score}">{_points(result.score)} / {_points(result.max_score)}</td>')
        else:
            cells.append('<td class=n data-v="-1">—</td>')
        for name in names:
            exercise = scores.get(name)
            cells.append(f'<td class=n data-v="{exercise.score}">{_points(exercise.score)}</td>' if exercise
                         else '<td class=n data-v="-1">—</td>')
        status = flagging.summary((f.kind, f.exercise) for f in _flags(record))
        cells.append(f"<td class=flag>{_esc(status)}</td>" if status else "<td>graded</td>")
        late, seconds = _late(record)
        cells.append(f'<td data-v="{seconds}">{_esc(late)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class=sortable><tr>{head}</tr>{"".join(rows)}</table>'


def _attention(records: list[BatchRecord]) -> list[str]:
    """Who needs a look, by kind of flag, with names and reasons."""
    titles = {flagging.FORBIDDEN: "Forbidden calls", flagging.FOR_REVIEW: "For review (tampering noted, no points lost)",
              flagging.TIMED_OUT: "Timed out", flagging.GRADER_ERROR: "Grader errors (not the students' fault)",
              flagging.UNUSABLE: "Unusable submissions (not graded)"}
    by_kind: dict[str, list[tuple[BatchRecord, flagging.Flag]]] = collections.defaultdict(list)
    for record in records:
        for flag in _flags(record):
            by_kind[flag.kind].append((record, flag))
    parts = ["<h2>Needs a look</h2>"]
    if not by_kind:
        parts.append("<p>Nothing: no forbidden call, tampering, time-out, grader error or unusable submission.</p>")
    for kind in (flagging.FORBIDDEN, flagging.FOR_REVIEW, flagging.TIMED_OUT, flagging.GRADER_ERROR, flagging.UNUSABLE):
        found = by_kind.get(kind)
        if not found:
            continue
        parts.append(f"<h3>{_esc(titles[kind])}: {len(found)}</h3><table class=sortable><tr><th>student</th>"
                     "<th>assignment</th><th>exercise</th><th>why</th></tr>")
        parts += [f"<tr><td>{_link(r, _who(r))}</td><td>{_esc(r.assignment or '')}</td>"
                  f"<td>{_esc(f.exercise or '')}</td><td><pre>{_esc(f.reason[:600])}</pre></td></tr>" for r, f in found]
        parts.append("</table>")
    return parts


def _hang(test: TestResult) -> bool:
    return test.message.startswith(("timed out", "crashed"))


def render(records: list[BatchRecord], *, title: str = "Class report", note: str = "") -> str:
    graded = [r.graded for r in records if r.graded is not None]
    others = [r for r in records if r.graded is None]
    by_assignment: dict[str, list[NotebookResult]] = collections.defaultdict(list)
    everyone: dict[str, list[BatchRecord]] = collections.defaultdict(list)
    for result in graded:
        by_assignment[result.assignment or "?"].append(result)
    for record in records:
        everyone[(record.result.assignment if record.result is not None else "") or record.assignment or "?"].append(record)
    order = {a: i for i, a in enumerate(registry.assignments())}
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>",
             f"<p>{len(records)} submissions: {len(graded)} graded, "
             f"{sum(r.status == RecordStatus.UNUSABLE for r in others)} unusable, "
             f"{sum(r.status != RecordStatus.UNUSABLE for r in others)} not graded (grader errors)."
             f"{(' ' + _esc(note)) if note else ''}</p>"]

    for assignment in sorted(everyone, key=lambda a: (order.get(a, len(order)), a)):
        group = by_assignment.get(assignment, [])
        parts.append(f"<h2>{_esc(assignment)}</h2>")
        parts.append(_students_table(assignment, everyone[assignment]))
        if not group:
            continue
        totals = [result.score for result in group]
        max_total = max(result.max_score for result in group)
        parts.append(f"<p>{len(group)} graded submissions; total: mean "
                     f"{statistics.fmean(totals):.2f}, median {_points(statistics.median(totals))} "
                     f"of {_points(max_total)}.</p>")
        exercises: dict[str, list[ExerciseResult]] = collections.defaultdict(list)
        for result in group:
            for exercise in result.exercises:
                exercises[exercise.name].append(exercise)
        figures = [_figure(totals, max_total, f"{assignment}: total")]
        rows = []
        for name, results in exercises.items():
            scores = [e.score for e in results]
            top = max(e.max_score for e in results)
            figures.append(_figure(scores, top, name))
            statuses = collections.Counter(e.status.value for e in results)
            rows.append("<tr>" + "".join([
                f"<td>{_esc(name)}</td>", f"<td class=n>{len(results)}</td>",
                f"<td class=n>{statistics.fmean(scores):.2f}</td>", f"<td class=n>{_points(statistics.median(scores))}</td>",
                f"<td class=n>{_points(top)}</td>",
                f"<td class=n>{sum(s >= top for s in scores)}</td>", f"<td class=n>{sum(s == 0 for s in scores)}</td>",
                "<td>" + ", ".join(f"{_esc(s.replace('_', ' '))}: {statuses[s]}" for s in STATUSES if statuses[s]) + "</td>",
            ]) + "</tr>")
        parts.append('<div class="figures">' + "".join(figures) + "</div>")
        parts.append("<table><tr><th>exercise</th><th>submissions</th><th>mean</th><th>median</th><th>max</th>"
                     "<th>full marks</th><th>zero</th><th>status</th></tr>" + "".join(rows) + "</table>")

    parts += _attention(records)

    failures: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[tuple[str, str, str], str] = {}
    attempts: collections.Counter = collections.Counter()
    for result in graded:
        for exercise in result.exercises:
            if exercise.status == Status.NOT_ATTEMPTED:
                continue  # counted in the exercise tables; a stub fails every test for one reason
            hung = False
            for test in exercise.tests:
                if not test.passed and _hang(test):
                    if hung:
                        continue  # one hang or crash takes down the tests after it: counted once
                    hung = True
                    key = (exercise.name, "(timed out or crashed)")
                else:
                    key = (exercise.name, test.name)
                attempts[key] += 1
                if not test.passed:
                    folded = _fold(test.message)
                    failures[key][folded] += 1
                    examples.setdefault((*key, folded), test.message.strip()[:600])
    ranked = sorted(failures.items(), key=lambda item: (-sum(item[1].values()), item[0]))[:TOP_TESTS]
    parts.append("<h2>Most frequent failing tests</h2><p>Among attempted exercises (not counting untouched stubs); "
                 "an exercise that hung or crashed counts once.</p>")
    if ranked:
        rows = []
        for (exercise, test), messages in ranked:
            shown = "".join(f"<li>{count}× <pre>{_esc(examples[(exercise, test, folded)])}</pre></li>"
                            for folded, count in messages.most_common(MESSAGES_PER_TEST))
            rows.append(f"<tr><td>{_esc(exercise)}</td><td>{_esc(test)}</td>"
                        f"<td class=n>{sum(messages.values())} / {attempts[(exercise, test)]}</td><td><ul>{shown}</ul></td></tr>")
        parts.append("<table><tr><th>exercise</th><th>test</th><th>failed</th><th>most frequent messages</th></tr>"
                     + "".join(rows) + "</table>")
    else:
        parts.append("<p>No hidden test failed.</p>")
    parts.append(f"<script>{SORT_SCRIPT}</script></body></html>\n")
    return "".join(parts)


def write(path: Path, records: list[BatchRecord], **kwargs: Any) -> Path:
    path.write_text(render(records, **kwargs), encoding="utf-8")
    return path
