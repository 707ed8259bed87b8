"""The program model: the student's cells parsed once, what each module-level name may be bound to,
the function and class scopes met on the way, and the time budget every step of the scan spends."""

from __future__ import annotations

import ast
import builtins
import time
from dataclasses import dataclass
from typing import Sequence

from autograder.submission.scan.findings import EVIDENCE_CHARS
from autograder.submission.scan.policy import CONVENTIONAL
from autograder.submission.scan.scopes import Path, Scope, collect_locals, imported

_BUILTINS = frozenset(dir(builtins))


class Exhausted(Exception):
    """The static scan's time budget is spent."""


def tick(program: Program) -> None:
    """One step of work: past the program's deadline the scan stops (``Exhausted``)."""
    if program.deadline is not None and time.thread_time() > program.deadline:
        raise Exhausted


# -- where nodes come from -------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    cell: int
    text: str  # the cell, or the constant string handed to exec/eval
    line: int | None = None  # code from an exec string is reported at the exec call's line

    def line_of(self, node: ast.AST) -> int:
        return self.line if self.line is not None else getattr(node, "lineno", 1)

    def evidence(self, node: ast.AST) -> str:
        try:
            text = ast.get_source_segment(self.text, node) or ast.unparse(node)
        except Exception:
            text = type(node).__name__
        text = " ".join(text.split())
        return text if len(text) <= EVIDENCE_CHARS else text[: EVIDENCE_CHARS - 3] + "..."


def parse(code: str) -> ast.Module | None:
    """The syntax tree of ``code``, or None where it cannot be parsed."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# -- the module: what each module-level name may be bound to ----------------------------------------


@dataclass(frozen=True)
class Binding:
    kind: str  # "path" (an import), "expr" (an assigned value), "def" (def/class), "opaque"
    value: object  # the dotted path, the value's expression or the def/class node
    source: Source
    statement: ast.AST


class Program:
    """The scanned cells: their syntax trees, each module-level name's possible bindings, the
    names the student's classes define as methods, and the scopes of the code walked so far."""

    def __init__(self, cells: list[str], deadline: float | None = None,
                 trees: Sequence[ast.Module | None] | None = None) -> None:
        self.deadline = deadline
        self.trees: list[tuple[ast.Module, Source]] = []
        self.bindings: dict[str, list[Binding]] = {}
        self.star_imports: list[str] = []
        self.method_names: set[str] = set()
        self.module = Scope("module", None)
        self._scopes: dict[int, tuple[ast.AST, Scope]] = {}  # def/class/lambda node -> its scope
        self.keep: list[ast.AST] = []  # code parsed from exec strings (kept alive: ids are keys)
        for index, cell in enumerate(cells):
            tree = trees[index] if trees is not None else parse(cell) if isinstance(cell, str) else None
            if tree is None:
                continue
            source = Source(index, cell)
            self.trees.append((tree, source))
            self._bind_block(tree.body, source, replace=True)

    # Module-level statements run in order, so a later binding replaces an earlier one; inside
    # if/for/try/with blocks either may hold, so bindings there are added to the candidates.
    def _bind_block(self, statements: list[ast.stmt], source: Source, replace: bool) -> None:
        for statement in statements:
            self._bind_statement(statement, source, replace)

    def _bind_statement(self, node: ast.stmt, source: Source, replace: bool) -> None:
        tick(self)
        bind = self._bind
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name, Binding("def", node, source, node), replace)
            if isinstance(node, ast.ClassDef):
                self.method_names.update(
                    s.name for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                )
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name, path in imported(node):
                if path.endswith(".*"):
                    self.star_imports.append(path[:-2])
                else:
                    bind(name, Binding("path", path, source, node), replace)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind_target(target, node.value, source, node, replace)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._bind_target(node.target, node.value, source, node, replace)
        elif isinstance(node, ast.AugAssign):
            self._bind_target(node.target, None, source, node, False)
        elif isinstance(node, ast.Expr) and _is_exec_of_constant(node.value):
            code = parse(node.value.args[0].value)
            if code is not None:
                self.keep.append(code)
                self._bind_block(code.body, Source(source.cell, node.value.args[0].value, source.line_of(node)), replace)
        else:
            for target in _block_targets(node):
                self._bind_target(target, None, source, node, False)
            for block in _blocks(node):
                self._bind_block(block, source, replace=False)

    def _bind_target(self, target: ast.AST, value: ast.AST | None, source: Source, statement: ast.AST,
                     replace: bool) -> None:
        if isinstance(target, ast.Name):
            kind = "expr" if value is not None else "opaque"
            self._bind(target.id, Binding(kind, value, source, statement), replace)
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = value.elts if isinstance(value, (ast.Tuple, ast.List)) else None
            if values is not None and len(values) == len(target.elts):
                for t, v in zip(target.elts, values):
                    self._bind_target(t, v, source, statement, replace)
            else:
                for t in target.elts:
                    self._bind_target(t, None, source, statement, replace)
        elif isinstance(target, ast.Starred):
            self._bind_target(target.value, None, source, statement, replace)

    def _bind(self, name: str, binding: Binding, replace: bool) -> None:
        if replace:
            self.bindings[name] = [binding]
        else:
            self.bindings.setdefault(name, []).append(binding)

    # -- local scopes ---------------------------------------------------------------------------

    def function_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, parent: Scope) -> Scope:
        if id(node) in self._scopes:
            return self._scopes[id(node)][1]
        scope = Scope("function", parent)
        self._scopes[id(node)] = (node, scope)
        arguments = node.args
        for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
            if arg is not None:
                scope.bind(arg.arg, None)
        for child in node.body if isinstance(node.body, list) else [node.body]:
            collect_locals(child, scope)
        for name in scope.globals:
            scope.locals.pop(name, None)
        return scope

    def class_scope(self, node: ast.ClassDef, parent: Scope) -> Scope:
        if id(node) in self._scopes:
            return self._scopes[id(node)][1]
        scope = Scope("class", parent)
        self._scopes[id(node)] = (node, scope)
        for child in node.body:
            collect_locals(child, scope)
        return scope

    def lookup(self, name: str, scope: Scope) -> list[tuple[object, Scope | Binding | None]]:
        """The values ``name`` may hold where it is read: ``(value, its scope)`` for locals,
        ``(binding, binding)`` for module-level names, ``(Path, None)`` for the rest."""
        current, innermost = scope, True
        while current.kind != "module":
            if name in current.globals:
                break
            if (innermost or current.kind == "function") and name in current.locals:
                return [(value, current) for value in current.locals[name]]
            innermost = False
            current = current.parent
        if name in self.bindings:
            return [(binding, binding) for binding in self.bindings[name]]
        if name in CONVENTIONAL:
            return [(Path(CONVENTIONAL[name]), None)]
        if name in _BUILTINS:
            return [(Path("builtins." + name), None)]
        return [(Path(f"{module}.{name}"), None) for module in self.star_imports]


def _is_exec_of_constant(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "exec"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _block_targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return [node.target]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [item.optional_vars for item in node.items if item.optional_vars is not None]
    return []


def _blocks(node: ast.AST) -> list[list[ast.stmt]]:
    blocks = [getattr(node, field) for field in ("body", "orelse", "finalbody") if isinstance(getattr(node, field, None), list)]
    blocks += [handler.body for handler in getattr(node, "handlers", [])]
    blocks += [case.body for case in getattr(node, "cases", [])]
    return blocks
