"""What every renderer shares: making student-controlled text safe, and formatting points.

Messages carry student text (exception messages, names from their code), so every renderer passes
every string through :func:`visible` first. It turns each character that could break a format or
deceive a reader into a visible escape such as ``\\x00``: control characters (NUL, ESC and the
rest of C0 and C1, so no terminal escape sequences), lone surrogates (not encodable as UTF-8),
U+FFFE and U+FFFF, and bidirectional overrides (text that displays in a different order from the
one it has). Newlines and tabs stay. What remains is legal XML 1.0 and valid UTF-8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from autograder.report.results import ExerciseResult, NotebookResult

Results = NotebookResult | Sequence[NotebookResult]

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """``text`` as a string with every unsafe character replaced by a visible escape."""
    return _UNSAFE.sub(_escape, str(text).replace("\r\n", "\n"))


def one_line(text: object) -> str:
    """:func:`visible`, with newlines and tabs turned into single spaces."""
    return " ".join(visible(text).split())


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def as_list(results: Results) -> list[NotebookResult]:
    return [results] if isinstance(results, NotebookResult) else list(results)


def points(value: float) -> str:
    """A score for people: ``3``, ``2.5``, ``0.33``."""
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def fraction(score: float, max_score: float) -> str:
    return f"{points(score)} / {points(max_score)}"


def failing_tests(exercise: ExerciseResult) -> list:
    return [t for t in exercise.tests if not t.passed]


UNOFFICIAL = "UNOFFICIAL: a self-check or a run without the grader's sandbox; this score does not count."
