"""Constant strings combined without running anything: every choice of one string per part, the
``%`` and ``str.format`` templates, and the constant indices and slices of a subscript."""

from __future__ import annotations

import ast
import itertools

_MAX_CONSTANTS = 64


def product(parts: list[set[str] | None], combine) -> set[str] | None:
    """``combine`` applied to every choice of one string per part (None if any part is unknown)."""
    if any(p is None for p in parts):
        return None
    out: set[str] = set()
    for combination in itertools.product(*parts):
        try:
            out.add(combine(list(combination)))
        except Exception:
            return None
        if len(out) > _MAX_CONSTANTS:
            return None
    return out


def format_template(template: str, style: str, args: list[str]) -> str:
    """``template % args`` (``style`` "%") or ``template.format(*args)`` (``style`` "format")."""
    return template % tuple(args) if style == "%" else template.format(*args)


def constant_index(node: ast.AST) -> int | slice | None:
    """The integer or slice a subscript's index is written as, or None if it is not constant."""
    def number(n: ast.AST | None) -> int | None:
        if n is None:
            return None
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and isinstance(n.operand, ast.Constant):
            n = ast.Constant(-n.operand.value) if type(n.operand.value) is int else n
        if isinstance(n, ast.Constant) and type(n.value) is int:
            return n.value
        raise ValueError

    try:
        if isinstance(node, ast.Slice):
            return slice(number(node.lower), number(node.upper), number(node.step))
        value = number(node)
        return value
    except ValueError:
        return None
