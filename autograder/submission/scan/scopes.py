"""Function and class scopes: the names each binds and the values they may be assigned, collected
from a def, lambda or class body without descending into the scopes nested in it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterable


class Scope:
    """A function or class scope: its local names and the values they may be assigned."""

    def __init__(self, kind: str, parent: Scope | None) -> None:
        self.kind = kind  # "module", "function" or "class"
        self.parent = parent
        self.locals: dict[str, list[object]] = {}  # name -> [expression | Path | None]
        self.globals: set[str] = set()

    def bind(self, name: str, value: object) -> None:
        self.locals.setdefault(name, []).append(value)


@dataclass(frozen=True)
class Path:
    """A value known only by its dotted name (an import, a conventional or builtin name)."""

    path: str


def imported(node: ast.Import | ast.ImportFrom) -> Iterable[tuple[str, str]]:
    """(bound name, dotted path) for each name an import statement binds."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                yield alias.asname, alias.name
            else:
                top = alias.name.split(".")[0]
                yield top, top
    elif node.level == 0 and node.module:
        for alias in node.names:
            yield alias.asname or alias.name, f"{node.module}.{alias.name}"


def collect_locals(node: ast.AST, scope: Scope) -> None:
    """Record the names a scope binds (not descending into nested scopes' bodies)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        scope.bind(node.name, None)
        return
    if isinstance(node, ast.Lambda):
        return
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        if isinstance(node, ast.Global):
            scope.globals.update(node.names)
        return
    if isinstance(node, ast.Assign):
        for target in node.targets:
            _bind_local(target, node.value, scope)
        collect_locals(node.value, scope)
        return
    if isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
        _bind_local(node.target, node.value, scope)
        collect_locals(node.value, scope)
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for name, path in imported(node):
            scope.bind(name, None if path.endswith(".*") else Path(path))
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        scope.bind(node.id, None)
    elif isinstance(node, ast.ExceptHandler) and node.name:
        scope.bind(node.name, None)
    elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
        scope.bind(node.name, None)
    elif isinstance(node, ast.MatchMapping) and node.rest:
        scope.bind(node.rest, None)
    for child in ast.iter_child_nodes(node):
        collect_locals(child, scope)


def _bind_local(target: ast.AST, value: ast.AST | None, scope: Scope) -> None:
    if isinstance(target, ast.Name):
        scope.bind(target.id, value)
    elif isinstance(target, (ast.Tuple, ast.List)):
        values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
        if values is not None and len(values) == len(target.elts):
            for t, v in zip(target.elts, values):
                _bind_local(t, v, scope)
        else:
            for t in target.elts:
                _bind_local(t, None, scope)
    elif isinstance(target, ast.Starred):
        _bind_local(target.value, None, scope)
    else:  # attribute or subscript targets bind no name; still record names stored inside them
        for child in ast.iter_child_nodes(target):
            collect_locals(child, scope)
