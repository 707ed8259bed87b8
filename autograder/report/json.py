"""JSON report: exactly one JSON object.

One notebook gives ``NotebookResult.to_json()``; several give ``{"score", "max_score",
"notebooks": [...]}``. Every string is passed through
:func:`~autograder.report.common.visible`, so the text reads the same as in the other reports and
the output is valid UTF-8 whatever the student's messages contain.
"""

from __future__ import annotations

import json
from typing import Any

from autograder.report.common import Results, as_list, visible
from autograder.report.results import NotebookResult


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def as_data(results: Results) -> dict[str, Any]:
    if isinstance(results, NotebookResult):
        return _clean(results.to_json())
    items = as_list(results)
    return {
        "score": round(sum(r.score for r in items), 6),
        "max_score": sum(r.max_score for r in items),
        "notebooks": [_clean(r.to_json()) for r in items],
    }


def render(results: Results) -> str:
    # allow_nan=False: a non-finite score is a grader bug, never an invalid JSON document.
    return json.dumps(as_data(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
