"""Reports, all rendered from the one result model (``autograder.report.results``).

Each format is a module with a pure ``render(results) -> str``; ``results`` is one
``NotebookResult`` or a list of them. :func:`render` picks the module by format name.
"""

from __future__ import annotations

from collections.abc import Callable

from autograder.report import gradescope, json, junit, markdown, text
from autograder.report.common import Results

RENDERERS: dict[str, Callable[[Results], str]] = {
    "text": text.render,
    "json": json.render,
    "markdown": markdown.render,
    "gradescope": gradescope.render,
    "junit": junit.render,
}
FORMATS: tuple[str, ...] = tuple(RENDERERS)


def render(results: Results, fmt: str) -> str:
    """The report of ``results`` (one ``NotebookResult`` or a list) in format ``fmt``."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    return renderer(results)
