"""The class report: one self-contained HTML page over a batch's results.

Per assignment: how many submissions, and the total's distribution; per exercise: a histogram of
scores (matplotlib, embedded as a base64 PNG), mean, median, full and zero marks, and how many
ended in each status; then the hidden tests that failed most often, each with its most frequent
messages (numbers folded so that the same mistake on different random inputs counts once), and the
submissions that could not be graded. Everything that comes from a submission is HTML-escaped.
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
from autograder.report.results import STATUSES

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
    axes.set_title(title, fontsize=10)
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


def render(records: list[dict[str, Any]], *, title: str = "Class report", note: str = "") -> str:
    graded = [r for r in records if r.get("status") == "graded" and r.get("result")]
    others = [r for r in records if r not in graded]
    by_assignment: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in graded:
        by_assignment[record["result"].get("assignment") or "?"].append(record)
    order = {a: i for i, a in enumerate(registry.assignments())}
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>",
             f"<p>{len(records)} submissions: {len(graded)} graded, "
             f"{sum(r.get('status') == 'unusable' for r in others)} unusable, "
             f"{sum(r.get('status') not in ('unusable',) for r in others)} not graded (grader errors)."
             f"{(' ' + _esc(note)) if note else ''}</p>"]

    for assignment in sorted(by_assignment, key=lambda a: (order.get(a, len(order)), a)):
        group = by_assignment[assignment]
        totals = [r["result"]["score"] for r in group]
        max_total = max(r["result"]["max_score"] for r in group)
        parts.append(f"<h2>{_esc(assignment)}</h2><p>{len(group)} submissions; total: mean "
                     f"{statistics.fmean(totals):.2f}, median {_points(statistics.median(totals))} "
                     f"of {_points(max_total)}.</p>")
        exercises: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for record in group:
            for exercise in record["result"]["exercises"]:
                exercises[exercise["name"]].append(exercise)
        figures = [_figure(totals, max_total, f"{assignment}: total")]
        rows = []
        for name, results in exercises.items():
            scores = [e["score"] for e in results]
            top = max(e["max_score"] for e in results)
            figures.append(_figure(scores, top, name))
            statuses = collections.Counter(e["status"] for e in results)
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

    failures: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[tuple[str, str, str], str] = {}
    attempts: collections.Counter = collections.Counter()
    for record in graded:
        for exercise in record["result"]["exercises"]:
            if exercise["status"] == "not_attempted":
                continue  # counted in the exercise tables; a stub fails every test for one reason
            for test in exercise["tests"]:
                key = (exercise["name"], test["name"])
                attempts[key] += 1
                if not test["passed"]:
                    folded = _fold(test.get("message", ""))
                    failures[key][folded] += 1
                    examples.setdefault((*key, folded), test.get("message", "").strip()[:600])
    ranked = sorted(failures.items(), key=lambda item: (-sum(item[1].values()), item[0]))[:TOP_TESTS]
    parts.append("<h2>Most frequent failing tests</h2><p>Among attempted exercises (not counting untouched stubs).</p>")
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

    if others:
        parts.append("<h2>Not graded</h2><table><tr><th>submission</th><th>status</th><th>why</th></tr>")
        parts += [f"<tr><td>{_esc(r['key'])}</td><td>{_esc(r.get('status', ''))}</td><td><pre>{_esc(r.get('message', ''))}</pre></td></tr>"
                  for r in others]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write(path: Path, records: list[dict[str, Any]], **kwargs: Any) -> Path:
    path.write_text(render(records, **kwargs), encoding="utf-8")
    return path
