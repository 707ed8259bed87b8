"""Evaluation without execution: the dotted paths (``torch.nn.functional.softmax``) and the
constant strings an expression may evaluate to, following names through the program's bindings
and scopes, ``getattr``, importers, ``operator.attrgetter``, ``vars(...)``, ``__dict__`` and
``sys.modules``."""

from __future__ import annotations

import ast
from typing import Iterable

from autograder.submission.scan.policy import IMPORTERS
from autograder.submission.scan.program import Binding, Program, tick
from autograder.submission.scan.scopes import Path, Scope
from autograder.submission.scan.strings import constant_index, format_template, product

_MAX_DEPTH = 24
_STRING_METHODS = frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "casefold", "title",
                             "capitalize", "swapcase"})


def canonical(path: str) -> str:
    """``torch._ops.ops.<x>`` is ``torch.ops.<x>`` (one object, two names): paths use the latter."""
    if path.startswith("torch._ops.ops."):
        return "torch.ops." + path[len("torch._ops.ops."):]
    return path


_BUSY = object()  # the memo's mark of a (node, scope) being evaluated: met again, it is a cycle


class Evaluator:
    """Evaluates dotted paths and constant strings, memoised per (node, scope); a cycle
    (``a = a + "x"``) evaluates to unknown."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.memo: dict[tuple[str, int, int], object] = {}

    def _memoised(self, kind: str, compute, node: ast.AST, scope: Scope, depth: int, unknown):
        tick(self.program)
        key = (kind, id(node), id(scope))
        found = self.memo.get(key)
        if found is _BUSY:
            return unknown
        if found is not None or key in self.memo:
            return found
        self.memo[key] = _BUSY
        value = compute(node, scope, depth)
        self.memo[key] = value
        return value

    def paths(self, node: ast.AST, scope: Scope, depth: int = 0) -> set[str]:
        """The dotted names (``torch.nn.functional.softmax``) an expression may evaluate to."""
        return self._memoised("paths", self._paths, node, scope, depth, set())

    def constants(self, node: ast.AST, scope: Scope, depth: int = 0) -> set[str] | None:
        """The strings an expression may evaluate to, or None if it is not a known constant."""
        return self._memoised("constants", self._constants, node, scope, depth, None)

    def _values(self, name: str, scope: Scope) -> Iterable[tuple[object, Scope]]:
        """(expression or Path, the scope to evaluate it in) for each value a name may hold."""
        for value, where in self.program.lookup(name, scope):
            if isinstance(where, Binding):
                if where.kind == "path":
                    yield Path(where.value), self.program.module
                elif where.kind == "expr":
                    yield where.value, self.program.module
                else:
                    yield None, self.program.module
            else:
                yield value, where

    def _paths(self, node: ast.AST, scope: Scope, depth: int) -> set[str]:
        if depth > _MAX_DEPTH:
            return set()
        deeper = depth + 1
        if isinstance(node, ast.Name):
            out: set[str] = set()
            for value, where in self._values(node.id, scope):
                if isinstance(value, Path):
                    out.add(canonical(value.path))
                elif isinstance(value, ast.AST):
                    out |= self.paths(value, where, deeper)
            return out
        if isinstance(node, ast.Attribute):
            return {canonical(f"{base}.{node.attr}") for base in self.paths(node.value, scope, deeper)}
        if isinstance(node, ast.Call):
            return self._call_paths(node, scope, deeper)
        if isinstance(node, ast.Subscript):
            return self._subscript_paths(node, scope, deeper)
        if isinstance(node, ast.NamedExpr):
            return self.paths(node.value, scope, deeper)
        if isinstance(node, ast.IfExp):
            return self.paths(node.body, scope, deeper) | self.paths(node.orelse, scope, deeper)
        if isinstance(node, ast.BoolOp):
            return set().union(*(self.paths(v, scope, deeper) for v in node.values))
        return set()

    def _call_paths(self, node: ast.Call, scope: Scope, depth: int) -> set[str]:
        callee = self.paths(node.func, scope, depth)
        args = node.args
        if "builtins.getattr" in callee and len(args) >= 2:
            names = self.constants(args[1], scope, depth) or set()
            return {canonical(f"{b}.{n}") for b in self.paths(args[0], scope, depth) for n in names}
        if callee & IMPORTERS and args:
            names = self.constants(args[0], scope, depth) or set()
            if "importlib.import_module" in callee:
                return names
            fromlist = args[3] if len(args) > 3 else next((k.value for k in node.keywords if k.arg == "fromlist"), None)
            whole = fromlist is not None and not (isinstance(fromlist, (ast.List, ast.Tuple)) and not fromlist.elts)
            return names if whole else {n.split(".")[0] for n in names}
        if isinstance(node.func, ast.Call) and args and "operator.attrgetter" in self.paths(node.func.func, scope, depth):
            names = self.constants(node.func.args[0], scope, depth) if node.func.args else None
            return {canonical(f"{b}.{n}") for b in self.paths(args[0], scope, depth) for n in names or ()}
        return set()

    def _subscript_paths(self, node: ast.Subscript, scope: Scope, depth: int) -> set[str]:
        keys = self.constants(node.slice, scope, depth)
        if not keys:
            return set()
        value = node.value
        if isinstance(value, ast.Call) and value.args and "builtins.vars" in self.paths(value.func, scope, depth):
            bases = self.paths(value.args[0], scope, depth)
        else:
            found = self.paths(value, scope, depth)
            bases = {p[: -len(".__dict__")] for p in found if p.endswith(".__dict__")}
            if "sys.modules" in found:
                return {canonical(k) for k in keys}
        return {canonical(f"{b}.{k}") for b in bases for k in keys}

    def dict_base(self, node: ast.Subscript, scope: Scope) -> set[str]:
        """The objects whose namespace a subscript indexes (``vars(torch)``, ``torch.__dict__``)."""
        value = node.value
        if isinstance(value, ast.Call) and value.args and "builtins.vars" in self.paths(value.func, scope):
            return self.paths(value.args[0], scope)
        found = self.paths(value, scope)
        return {p[: -len(".__dict__")] for p in found if p.endswith(".__dict__")} | (
            {"sys.modules"} if "sys.modules" in found else set())

    def _constants(self, node: ast.AST, scope: Scope, depth: int) -> set[str] | None:
        if depth > _MAX_DEPTH:
            return None
        deeper = depth + 1
        if isinstance(node, ast.Constant):
            return {node.value} if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append({str(value.value)})
                elif isinstance(value, ast.FormattedValue) and value.format_spec is None and value.conversion in (-1, 115):
                    parts.append(self.constants(value.value, scope, deeper))
                else:
                    return None
            return product(parts, "".join)
        if isinstance(node, ast.BinOp):
            return self._binop(node, scope, deeper)
        if isinstance(node, ast.Call):
            return self._string_call(node, scope, deeper)
        if isinstance(node, ast.Subscript):
            strings = self.constants(node.value, scope, deeper)
            index = constant_index(node.slice)
            if strings is None or index is None:
                return None
            try:
                return {s[index] for s in strings}
            except (IndexError, ValueError, TypeError):
                return None
        if isinstance(node, ast.Name):
            out: set[str] = set()
            for value, where in self._values(node.id, scope):
                found = self.constants(value, where, deeper) if isinstance(value, ast.AST) else None
                if found is None:
                    return None
                out |= found
            return out or None
        if isinstance(node, ast.IfExp):
            body, orelse = self.constants(node.body, scope, deeper), self.constants(node.orelse, scope, deeper)
            return None if body is None or orelse is None else body | orelse
        return None

    def _binop(self, node: ast.BinOp, scope: Scope, depth: int) -> set[str] | None:
        left = self.constants(node.left, scope, depth)
        if isinstance(node.op, ast.Add):
            return product([left, self.constants(node.right, scope, depth)], "".join)
        if isinstance(node.op, ast.Mult):
            count = node.right if left is not None else node.left
            strings = left if left is not None else self.constants(node.right, scope, depth)
            if strings is not None and isinstance(count, ast.Constant) and type(count.value) is int and 0 <= count.value <= 64:
                return {s * count.value for s in strings}
            return None
        if isinstance(node.op, ast.Mod) and left is not None:
            items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            values = [self.constants(item, scope, depth) for item in items]
            return product([left, *values], lambda parts: format_template(parts[0], "%", parts[1:]))
        return None

    def _string_call(self, node: ast.Call, scope: Scope, depth: int) -> set[str] | None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "str" and len(node.args) == 1 and not node.keywords:
            return self.constants(node.args[0], scope, depth)
        if not isinstance(func, ast.Attribute) or node.keywords:
            return None
        base = self.constants(func.value, scope, depth)
        if base is None:
            return None
        method, args = func.attr, node.args
        if method == "join" and len(args) == 1:
            return self._join(base, args[0], scope, depth)
        if method == "format":
            return product([base, *(self.constants(a, scope, depth) for a in args)],
                            lambda parts: format_template(parts[0], "format", parts[1:]))
        if method in _STRING_METHODS and not args:
            return {getattr(s, method)() for s in base}
        if method == "replace" and len(args) == 2:
            return product([base, *(self.constants(a, scope, depth) for a in args)],
                            lambda parts: parts[0].replace(parts[1], parts[2]))
        return None

    def _join(self, separators: set[str], items: ast.AST, scope: Scope, depth: int) -> set[str] | None:
        if isinstance(items, ast.Call) and isinstance(items.func, ast.Name) and items.func.id == "reversed" and len(items.args) == 1:
            strings = self.constants(items.args[0], scope, depth)
            return product([separators, strings], lambda parts: parts[0].join(reversed(parts[1])))
        if isinstance(items, (ast.List, ast.Tuple, ast.Set)):
            parts = [self.constants(e, scope, depth) for e in items.elts]
            return product([separators, *parts], lambda p: p[0].join(p[1:]))
        strings = self.constants(items, scope, depth)  # "".join("softmax") joins characters
        return product([separators, strings], lambda parts: parts[0].join(parts[1]))
