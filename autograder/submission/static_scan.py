"""Static scan of a student's code for forbidden calls: the source is parsed, never executed.

What counts is what the graded function can reach: its own body (decorators and default values
included) and, transitively, the module-level functions, classes, lambdas and assigned values it
refers to by name. A student's own check at top level (``print(F.softmax(X, -1))``) is not a
violation. Names are resolved through imports and aliases (``import torch.nn.functional as F``,
``from torch import softmax as sm``, ``nnf = torch.nn.functional``, local aliases), constant
``getattr`` names (``getattr(F, "soft" + "max")``), ``importlib.import_module``, ``__import__``,
``sys.modules[...]``, ``vars(torch)[...]``, and ``torch.ops.aten.<op>`` (matched against the ATen
prefixes). Tensor methods (``X.softmax(-1)``) match patterns written ``.softmax`` or
``Tensor.softmax``, unless the student's own classes define a method of that name. Routines reached
under another name (``torch.nn.modules.activation.Softmax``) are recognised by identity, looking
names up in the grader's torch without running anything.

Besides the registry's forbidden names, a finding may be one of:

- ``DYNAMIC_ATTRIBUTE``, ``DYNAMIC_IMPORT``, ``DYNAMIC_CODE``: in the graded code, a ``getattr``
  on torch with a name that is not a constant, an import of a computed name, or
  ``eval``/``exec``/``compile``: what they reach cannot be verified, so they count as forbidden
  (constant strings given to ``eval``/``exec`` are also scanned as code);
- ``TAMPERING``: anywhere in the student's code, top level included, an attempt to disable or
  bypass the runtime recorders (``torch.overrides``, ``torch.utils._python_dispatch``, mode stack
  manipulation, ``DisableTorchFunction``, ``sys.settrace``/``setprofile``, reassigning or deleting
  attributes of torch modules, ``sys.modules`` or ``builtins``, reloading modules).

An exercise with nothing forbidden has nothing to verify: its scan is empty. This is a policy check
reported with evidence, not a security boundary (the runtime recorders back it up).
"""

from __future__ import annotations

import ast
import builtins
import itertools
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

from autograder.course.registry import Forbidden
from autograder.worker.recorders import routine_of

TAMPERING = "recorder tampering"
DYNAMIC_CODE = "dynamic code execution"
DYNAMIC_ATTRIBUTE = "dynamic attribute access on torch (cannot be verified)"
DYNAMIC_IMPORT = "dynamic import (cannot be verified)"
TOO_COMPLEX = "code too complex to verify in the time allowed"

EVIDENCE_CHARS = 80

#: Names that only code poking at the recorders' machinery uses (matched as any path segment).
TAMPER_NAMES = frozenset({
    "DisableTorchFunction", "DisableTorchFunctionSubclass", "_disable_torch_function",
    "_DisableTorchDispatch", "_DisablePythonDispatcher", "_disable_current_modes",
    "_pop_mode", "_pop_mode_temporarily", "_push_mode", "_set_torch_function_mode",
    "_pop_torch_function_stack", "_pop_torch_dispatch_stack",
    "_push_on_torch_function_stack", "_push_on_torch_dispatch_stack",
    "_set_dispatch_mode", "_unset_dispatch_mode", "_get_dispatch_mode",
    "_get_current_function_mode", "_get_current_function_mode_stack",
    "_get_current_dispatch_mode", "_get_current_dispatch_mode_stack",
    "_get_function_stack_at", "_get_dispatch_stack_at",
    "_len_torch_function_stack", "_len_torch_dispatch_stack",
    "TorchFunctionMode", "BaseTorchFunctionMode", "TorchDispatchMode", "BaseTorchDispatchMode",
    "settrace", "setprofile", "settrace_all_threads", "setprofile_all_threads",
})
TAMPER_MODULES = ("torch.overrides", "torch.utils._python_dispatch", "sys.monitoring")
#: torch settings a student may legitimately assign (``torch.backends.cudnn.benchmark = False``).
SETTINGS = ("torch.backends.", "torch._dynamo.config.", "torch._inductor.config.", "torch._functorch.config.")

#: What an unbound name most likely is: the notebooks' locked setup cells import these, and such
#: cells may not be among the cells scanned.
CONVENTIONAL = {"torch": "torch", "F": "torch.nn.functional", "nn": "torch.nn", "np": "numpy",
                "math": "math", "sys": "sys", "importlib": "importlib", "operator": "operator",
                "functools": "functools", "builtins": "builtins", "__builtins__": "builtins"}

_BUILTINS = frozenset(dir(builtins))
_CODE_RUNNERS = frozenset({"builtins.eval", "builtins.exec", "builtins.compile"})
_IMPORTERS = frozenset({"importlib.import_module", "builtins.__import__", "importlib.__import__"})
_MAX_DEPTH = 24
_MAX_CONSTANTS = 64
_STRING_METHODS = frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "casefold", "title",
                             "capitalize", "swapcase"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class Finding:
    call: str  # Forbidden.name, or one of TAMPERING / DYNAMIC_* above
    cell: int  # index in the scanned cells
    line: int  # 1-based line inside that cell
    evidence: str  # the offending source text, at most EVIDENCE_CHARS characters


def scan(cells: list[str], function: str, forbidden: Sequence[Forbidden], *,
         deadline: float | None = None, trees: Sequence[ast.Module | None] | None = None) -> list[Finding]:
    """Findings for the graded ``function`` defined in ``cells`` (plain Python; unparsable cells
    are skipped), against the exercise's ``forbidden`` routines, sorted by cell and line.

    ``deadline`` (a ``time.thread_time()`` value) bounds the work: code that takes longer to
    resolve (thousands of conditional rebindings) cannot be verified and is reported as
    ``TOO_COMPLEX``, which counts as forbidden like the other unverifiable constructs. ``trees``:
    the cells already parsed (one per cell, None for a cell not run), so that nothing is parsed
    twice."""
    if not forbidden:
        return []
    findings: dict[tuple[str, int, int], Finding] = {}
    try:
        program = _Program(cells, deadline, trees)
        _GradedScan(program, _Matcher(forbidden), findings).run(function)
        _TamperScan(program, findings).run()
    except _Exhausted:
        findings[(TOO_COMPLEX, -1, 0)] = Finding(TOO_COMPLEX, -1, 0, "the static check ran out of time")
    return sorted(findings.values(), key=lambda f: (f.cell, f.line, f.call))


class _Exhausted(Exception):
    """The static scan's time budget is spent."""


def _tick(program: "_Program") -> None:
    if program.deadline is not None and time.thread_time() > program.deadline:
        raise _Exhausted


# -- where nodes come from -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
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


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# -- the module: what each module-level name may be bound to ----------------------------------------


@dataclass(frozen=True)
class _Binding:
    kind: str  # "path" (an import), "expr" (an assigned value), "def" (def/class), "opaque"
    value: object  # the dotted path, the value's expression or the def/class node
    source: _Source
    statement: ast.AST


class _Scope:
    """A function or class scope: its local names and the values they may be assigned."""

    def __init__(self, kind: str, parent: _Scope | None) -> None:
        self.kind = kind  # "module", "function" or "class"
        self.parent = parent
        self.locals: dict[str, list[object]] = {}  # name -> [expression | _Path | None]
        self.globals: set[str] = set()

    def bind(self, name: str, value: object) -> None:
        self.locals.setdefault(name, []).append(value)


@dataclass(frozen=True)
class _Path:
    path: str


class _Program:
    def __init__(self, cells: list[str], deadline: float | None = None,
                 trees: Sequence[ast.Module | None] | None = None) -> None:
        self.deadline = deadline
        self.trees: list[tuple[ast.Module, _Source]] = []
        self.bindings: dict[str, list[_Binding]] = {}
        self.star_imports: list[str] = []
        self.method_names: set[str] = set()
        self.module = _Scope("module", None)
        self._scopes: dict[int, tuple[ast.AST, _Scope]] = {}  # def/class/lambda node -> its scope
        self.keep: list[ast.AST] = []  # code parsed from exec strings (kept alive: ids are keys)
        for index, cell in enumerate(cells):
            tree = trees[index] if trees is not None else _parse(cell) if isinstance(cell, str) else None
            if tree is None:
                continue
            source = _Source(index, cell)
            self.trees.append((tree, source))
            self._bind_block(tree.body, source, replace=True)

    # Module-level statements run in order, so a later binding replaces an earlier one; inside
    # if/for/try/with blocks either may hold, so bindings there are added to the candidates.
    def _bind_block(self, statements: list[ast.stmt], source: _Source, replace: bool) -> None:
        for statement in statements:
            self._bind_statement(statement, source, replace)

    def _bind_statement(self, node: ast.stmt, source: _Source, replace: bool) -> None:
        _tick(self)
        bind = self._bind
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bind(node.name, _Binding("def", node, source, node), replace)
            if isinstance(node, ast.ClassDef):
                self.method_names.update(
                    s.name for s in node.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                )
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for name, path in _imported(node):
                if path.endswith(".*"):
                    self.star_imports.append(path[:-2])
                else:
                    bind(name, _Binding("path", path, source, node), replace)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind_target(target, node.value, source, node, replace)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._bind_target(node.target, node.value, source, node, replace)
        elif isinstance(node, ast.AugAssign):
            self._bind_target(node.target, None, source, node, False)
        elif isinstance(node, ast.Expr) and _is_exec_of_constant(node.value):
            code = _parse(node.value.args[0].value)
            if code is not None:
                self.keep.append(code)
                self._bind_block(code.body, _Source(source.cell, node.value.args[0].value, source.line_of(node)), replace)
        else:
            for target in _block_targets(node):
                self._bind_target(target, None, source, node, False)
            for block in _blocks(node):
                self._bind_block(block, source, replace=False)

    def _bind_target(self, target: ast.AST, value: ast.AST | None, source: _Source, statement: ast.AST,
                     replace: bool) -> None:
        if isinstance(target, ast.Name):
            kind = "expr" if value is not None else "opaque"
            self._bind(target.id, _Binding(kind, value, source, statement), replace)
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

    def _bind(self, name: str, binding: _Binding, replace: bool) -> None:
        if replace:
            self.bindings[name] = [binding]
        else:
            self.bindings.setdefault(name, []).append(binding)

    # -- local scopes ---------------------------------------------------------------------------

    def function_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, parent: _Scope) -> _Scope:
        if id(node) in self._scopes:
            return self._scopes[id(node)][1]
        scope = _Scope("function", parent)
        self._scopes[id(node)] = (node, scope)
        arguments = node.args
        for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]:
            if arg is not None:
                scope.bind(arg.arg, None)
        for child in node.body if isinstance(node.body, list) else [node.body]:
            _collect_locals(child, scope)
        for name in scope.globals:
            scope.locals.pop(name, None)
        return scope

    def class_scope(self, node: ast.ClassDef, parent: _Scope) -> _Scope:
        if id(node) in self._scopes:
            return self._scopes[id(node)][1]
        scope = _Scope("class", parent)
        self._scopes[id(node)] = (node, scope)
        for child in node.body:
            _collect_locals(child, scope)
        return scope

    def lookup(self, name: str, scope: _Scope) -> list[tuple[object, _Scope | _Binding | None]]:
        """The values ``name`` may hold where it is read: ``(value, its scope)`` for locals,
        ``(binding, binding)`` for module-level names, ``(_Path, None)`` for the rest."""
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
            return [(_Path(CONVENTIONAL[name]), None)]
        if name in _BUILTINS:
            return [(_Path("builtins." + name), None)]
        return [(_Path(f"{module}.{name}"), None) for module in self.star_imports]


def _imported(node: ast.Import | ast.ImportFrom) -> Iterable[tuple[str, str]]:
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


def _collect_locals(node: ast.AST, scope: _Scope) -> None:
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
        _collect_locals(node.value, scope)
        return
    if isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
        _bind_local(node.target, node.value, scope)
        _collect_locals(node.value, scope)
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for name, path in _imported(node):
            scope.bind(name, None if path.endswith(".*") else _Path(path))
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
        _collect_locals(child, scope)


def _bind_local(target: ast.AST, value: ast.AST | None, scope: _Scope) -> None:
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
            _collect_locals(child, scope)


# -- evaluation without execution: dotted paths and constant strings --------------------------------


def _canonical(path: str) -> str:
    if path.startswith("torch._ops.ops."):
        return "torch.ops." + path[len("torch._ops.ops."):]
    return path


def _torch_rooted(path: str) -> bool:
    return path == "torch" or path.startswith("torch.")


_BUSY = object()


class _Evaluator:
    """Evaluates dotted paths and constant strings, memoised per (node, scope); a cycle
    (``a = a + "x"``) evaluates to unknown."""

    def __init__(self, program: _Program) -> None:
        self.program = program
        self.memo: dict[tuple[str, int, int], object] = {}

    def _memoised(self, kind: str, compute, node: ast.AST, scope: _Scope, depth: int, unknown):
        _tick(self.program)
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

    def paths(self, node: ast.AST, scope: _Scope, depth: int = 0) -> set[str]:
        """The dotted names (``torch.nn.functional.softmax``) an expression may evaluate to."""
        return self._memoised("paths", self._paths, node, scope, depth, set())

    def constants(self, node: ast.AST, scope: _Scope, depth: int = 0) -> set[str] | None:
        """The strings an expression may evaluate to, or None if it is not a known constant."""
        return self._memoised("constants", self._constants, node, scope, depth, None)

    def _values(self, name: str, scope: _Scope) -> Iterable[tuple[object, _Scope]]:
        """(expression or _Path, the scope to evaluate it in) for each value a name may hold."""
        for value, where in self.program.lookup(name, scope):
            if isinstance(where, _Binding):
                if where.kind == "path":
                    yield _Path(where.value), self.program.module
                elif where.kind == "expr":
                    yield where.value, self.program.module
                else:
                    yield None, self.program.module
            else:
                yield value, where

    def _paths(self, node: ast.AST, scope: _Scope, depth: int) -> set[str]:
        if depth > _MAX_DEPTH:
            return set()
        deeper = depth + 1
        if isinstance(node, ast.Name):
            out: set[str] = set()
            for value, where in self._values(node.id, scope):
                if isinstance(value, _Path):
                    out.add(_canonical(value.path))
                elif isinstance(value, ast.AST):
                    out |= self.paths(value, where, deeper)
            return out
        if isinstance(node, ast.Attribute):
            return {_canonical(f"{base}.{node.attr}") for base in self.paths(node.value, scope, deeper)}
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

    def _call_paths(self, node: ast.Call, scope: _Scope, depth: int) -> set[str]:
        callee = self.paths(node.func, scope, depth)
        args = node.args
        if "builtins.getattr" in callee and len(args) >= 2:
            names = self.constants(args[1], scope, depth) or set()
            return {_canonical(f"{b}.{n}") for b in self.paths(args[0], scope, depth) for n in names}
        if callee & _IMPORTERS and args:
            names = self.constants(args[0], scope, depth) or set()
            if "importlib.import_module" in callee:
                return names
            fromlist = args[3] if len(args) > 3 else next((k.value for k in node.keywords if k.arg == "fromlist"), None)
            whole = fromlist is not None and not (isinstance(fromlist, (ast.List, ast.Tuple)) and not fromlist.elts)
            return names if whole else {n.split(".")[0] for n in names}
        if isinstance(node.func, ast.Call) and args and "operator.attrgetter" in self.paths(node.func.func, scope, depth):
            names = self.constants(node.func.args[0], scope, depth) if node.func.args else None
            return {_canonical(f"{b}.{n}") for b in self.paths(args[0], scope, depth) for n in names or ()}
        return set()

    def _subscript_paths(self, node: ast.Subscript, scope: _Scope, depth: int) -> set[str]:
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
                return {_canonical(k) for k in keys}
        return {_canonical(f"{b}.{k}") for b in bases for k in keys}

    def dict_base(self, node: ast.Subscript, scope: _Scope) -> set[str]:
        """The objects whose namespace a subscript indexes (``vars(torch)``, ``torch.__dict__``)."""
        value = node.value
        if isinstance(value, ast.Call) and value.args and "builtins.vars" in self.paths(value.func, scope):
            return self.paths(value.args[0], scope)
        found = self.paths(value, scope)
        return {p[: -len(".__dict__")] for p in found if p.endswith(".__dict__")} | (
            {"sys.modules"} if "sys.modules" in found else set())

    def _constants(self, node: ast.AST, scope: _Scope, depth: int) -> set[str] | None:
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
            return _product(parts, "".join)
        if isinstance(node, ast.BinOp):
            return self._binop(node, scope, deeper)
        if isinstance(node, ast.Call):
            return self._string_call(node, scope, deeper)
        if isinstance(node, ast.Subscript):
            strings = self.constants(node.value, scope, deeper)
            index = _constant_index(node.slice)
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

    def _binop(self, node: ast.BinOp, scope: _Scope, depth: int) -> set[str] | None:
        left = self.constants(node.left, scope, depth)
        if isinstance(node.op, ast.Add):
            return _product([left, self.constants(node.right, scope, depth)], "".join)
        if isinstance(node.op, ast.Mult):
            count = node.right if left is not None else node.left
            strings = left if left is not None else self.constants(node.right, scope, depth)
            if strings is not None and isinstance(count, ast.Constant) and type(count.value) is int and 0 <= count.value <= 64:
                return {s * count.value for s in strings}
            return None
        if isinstance(node.op, ast.Mod) and left is not None:
            items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            values = [self.constants(item, scope, depth) for item in items]
            return _product([left, *values], lambda parts: _format(parts[0], "%", parts[1:]))
        return None

    def _string_call(self, node: ast.Call, scope: _Scope, depth: int) -> set[str] | None:
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
            return _product([base, *(self.constants(a, scope, depth) for a in args)],
                            lambda parts: _format(parts[0], "format", parts[1:]))
        if method in _STRING_METHODS and not args:
            return {getattr(s, method)() for s in base}
        if method == "replace" and len(args) == 2:
            return _product([base, *(self.constants(a, scope, depth) for a in args)],
                            lambda parts: parts[0].replace(parts[1], parts[2]))
        return None

    def _join(self, separators: set[str], items: ast.AST, scope: _Scope, depth: int) -> set[str] | None:
        if isinstance(items, ast.Call) and isinstance(items.func, ast.Name) and items.func.id == "reversed" and len(items.args) == 1:
            strings = self.constants(items.args[0], scope, depth)
            return _product([separators, strings], lambda parts: parts[0].join(reversed(parts[1])))
        if isinstance(items, (ast.List, ast.Tuple, ast.Set)):
            parts = [self.constants(e, scope, depth) for e in items.elts]
            return _product([separators, *parts], lambda p: p[0].join(p[1:]))
        strings = self.constants(items, scope, depth)  # "".join("softmax") joins characters
        return _product([separators, strings], lambda parts: parts[0].join(parts[1]))


def _product(parts: list[set[str] | None], combine) -> set[str] | None:
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


def _format(template: str, style: str, args: list[str]) -> str:
    return template % tuple(args) if style == "%" else template.format(*args)


def _constant_index(node: ast.AST) -> int | slice | None:
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


# -- matching --------------------------------------------------------------------------------------


class _Matcher:
    """Dotted path -> Forbidden.name, by pattern, ATen prefix, Tensor method name or identity."""

    def __init__(self, forbidden: Sequence[Forbidden]) -> None:
        self.exact: dict[str, str] = {}
        self.methods: dict[str, str] = {}
        self.aten: list[tuple[str, str]] = []
        self.objects: dict[int, tuple[object, str]] = {}
        for entry in forbidden:
            for pattern in entry.all_patterns():
                self.exact.setdefault(pattern, entry.name)
                for prefix in (".", "Tensor."):
                    if pattern.startswith(prefix):
                        self.methods.setdefault(pattern[len(prefix):], entry.name)
                obj = routine_of(pattern)
                if obj is not None:
                    self.objects.setdefault(id(obj), (obj, entry.name))
            self.aten += [(prefix, entry.name) for prefix in entry.aten]

    def path(self, path: str) -> str | None:
        if path in self.exact:
            return self.exact[path]
        if path.startswith("torch.ops.aten."):
            op = path[len("torch.ops."):]
            matches = [(len(prefix), name) for prefix, name in self.aten if op.startswith(prefix)]
            if matches:
                return max(matches)[1]
        if _torch_rooted(path):
            obj = routine_of(path)
            entry = self.objects.get(id(obj)) if obj is not None else None
            if entry is not None and entry[0] is obj:
                return entry[1]
        return None

    def method(self, name: str) -> str | None:
        return self.methods.get(name)


# -- walking code with its scopes ------------------------------------------------------------------


class _Walker:
    """Visits code, keeping track of scopes; subclasses react to references, calls and stores."""

    def __init__(self, program: _Program, findings: dict[tuple[str, int, int], Finding]) -> None:
        self.program = program
        self.evaluate = _Evaluator(program)
        self.findings = findings

    def report(self, call: str, node: ast.AST, source: _Source) -> None:
        key = (call, source.cell, source.line_of(node))
        if key not in self.findings:
            self.findings[key] = Finding(call, source.cell, key[2], source.evidence(node))

    def visit(self, node: ast.AST, scope: _Scope, source: _Source) -> None:
        _tick(self.program)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for outer in [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]:
                if outer is not None:
                    self.visit(outer, scope, source)
            inner = self.program.function_scope(node, scope)
            for statement in node.body if isinstance(node.body, list) else [node.body]:
                self.visit(statement, inner, source)
            return
        if isinstance(node, ast.ClassDef):
            for outer in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.visit(outer, scope, source)
            inner = self.program.class_scope(node, scope)
            for statement in node.body:
                self.visit(statement, inner, source)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.on_import(node, source)
        elif isinstance(node, ast.Call):
            self.on_call(node, scope, source)
            if self._runs_code(node, scope):
                for code in self.evaluate.constants(node.args[0], scope) or ():
                    tree = _parse(code)
                    if tree is not None:
                        self.program.keep.append(tree)
                        self.visit(tree, scope, _Source(source.cell, code, source.line_of(node)))
        elif isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and isinstance(node.ctx, ast.Load):
            self.on_reference(node, scope, source)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            for target in getattr(node, "targets", None) or [node.target]:
                self.on_store(target, scope, source)
        for child in ast.iter_child_nodes(node):
            self.visit(child, scope, source)

    def _runs_code(self, node: ast.Call, scope: _Scope) -> bool:
        return bool(node.args) and bool(self.evaluate.paths(node.func, scope) & _CODE_RUNNERS)

    def on_import(self, node: ast.Import | ast.ImportFrom, source: _Source) -> None:
        pass

    def on_call(self, node: ast.Call, scope: _Scope, source: _Source) -> None:
        pass

    def on_reference(self, node: ast.AST, scope: _Scope, source: _Source) -> None:
        pass

    def on_store(self, target: ast.AST, scope: _Scope, source: _Source) -> None:
        pass


class _GradedScan(_Walker):
    """Forbidden routines reachable from the graded function."""

    def __init__(self, program: _Program, matcher: _Matcher, findings: dict) -> None:
        super().__init__(program, findings)
        self.matcher = matcher
        self.queue: deque[tuple[ast.AST, _Source]] = deque()
        self.queued: set[int] = set()

    def run(self, function: str) -> None:
        for binding in self.program.bindings.get(function, []):
            if binding.kind == "path":
                self._check_paths({_canonical(binding.value)}, binding.statement, binding.source)
            elif binding.kind in ("def", "expr"):
                self._enqueue(binding)
        while self.queue:
            node, source = self.queue.popleft()
            _guarded(self.visit, node, self.program.module, source)

    def _enqueue(self, binding: _Binding) -> None:
        if id(binding.value) not in self.queued:
            self.queued.add(id(binding.value))
            self.queue.append((binding.value, binding.source))

    def _check_paths(self, paths: set[str], node: ast.AST, source: _Source) -> None:
        for path in sorted(paths):
            name = self.matcher.path(path)
            if name is not None:
                self.report(name, node, source)

    def _check_method(self, name: str, node: ast.AST, source: _Source) -> None:
        found = self.matcher.method(name)
        if found is not None and name not in self.program.method_names:
            self.report(found, node, source)

    def on_reference(self, node: ast.AST, scope: _Scope, source: _Source) -> None:
        if isinstance(node, ast.Name):
            for _, where in self.program.lookup(node.id, scope):
                if isinstance(where, _Binding) and where.kind in ("def", "expr"):
                    self._enqueue(where)
        self._check_paths(self.evaluate.paths(node, scope), node, source)
        if isinstance(node, ast.Attribute) and not self.evaluate.paths(node.value, scope):
            self._check_method(node.attr, node, source)
        if isinstance(node, ast.Subscript) and self.evaluate.constants(node.slice, scope) is None:
            if any(_torch_rooted(b) for b in self.evaluate.dict_base(node, scope)):
                self.report(DYNAMIC_ATTRIBUTE, node, source)

    def on_call(self, node: ast.Call, scope: _Scope, source: _Source) -> None:
        callee = self.evaluate.paths(node.func, scope)
        self._check_paths(callee | self.evaluate.paths(node, scope), node, source)
        if isinstance(node.func, ast.Attribute) and not self.evaluate.paths(node.func.value, scope):
            self._check_method(node.func.attr, node, source)
        args = node.args
        if callee & _CODE_RUNNERS:
            self.report(DYNAMIC_CODE, node, source)
        if "builtins.getattr" in callee and len(args) >= 2:
            names = self.evaluate.constants(args[1], scope)
            bases = self.evaluate.paths(args[0], scope)
            if names is None:
                if any(_torch_rooted(b) for b in bases):
                    self.report(DYNAMIC_ATTRIBUTE, node, source)
            elif not bases:
                for name in names:
                    self._check_method(name, node, source)
        if callee & _IMPORTERS and args and self.evaluate.constants(args[0], scope) is None:
            self.report(DYNAMIC_IMPORT, node, source)
        if "operator.methodcaller" in callee and args:
            for name in self.evaluate.constants(args[0], scope) or ():
                self._check_method(name, node, source)
        if isinstance(node.func, ast.Call) and "operator.attrgetter" in self.evaluate.paths(node.func.func, scope):
            if node.func.args and self.evaluate.constants(node.func.args[0], scope) is None and args:
                if any(_torch_rooted(b) for b in self.evaluate.paths(args[0], scope)):
                    self.report(DYNAMIC_ATTRIBUTE, node, source)


class _TamperScan(_Walker):
    """Attempts to disable or bypass the runtime recorders, anywhere in the student's code."""

    def run(self) -> None:
        for tree, source in self.program.trees:
            _guarded(self.visit, tree, self.program.module, source)

    def on_import(self, node: ast.Import | ast.ImportFrom, source: _Source) -> None:
        paths = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [
            f"{node.module}.{alias.name}" for alias in node.names if node.module and node.level == 0]
        if any(_tampers(p) for p in paths):
            self.report(TAMPERING, node, source)

    def on_reference(self, node: ast.AST, scope: _Scope, source: _Source) -> None:
        if isinstance(node, ast.Attribute) and node.attr in TAMPER_NAMES:
            self.report(TAMPERING, node, source)
        elif any(_tampers(p) for p in self.evaluate.paths(node, scope)):
            self.report(TAMPERING, node, source)

    def on_call(self, node: ast.Call, scope: _Scope, source: _Source) -> None:
        callee = self.evaluate.paths(node.func, scope)
        if any(_tampers(p) for p in callee | self.evaluate.paths(node, scope)):
            self.report(TAMPERING, node, source)
        if "importlib.reload" in callee:
            self.report(TAMPERING, node, source)
        writes = {"builtins.setattr", "builtins.delattr"} & callee or {
            p for p in callee if p.endswith((".__setattr__", ".__delattr__"))}
        if writes and node.args and any(_protected(p) for p in self.evaluate.paths(node.args[0], scope)):
            self.report(TAMPERING, node, source)

    def on_store(self, target: ast.AST, scope: _Scope, source: _Source) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.on_store(element, scope, source)
        elif isinstance(target, ast.Starred):
            self.on_store(target.value, scope, source)
        elif isinstance(target, ast.Attribute):
            if any(_protected(p) and not f"{p}.{target.attr}".startswith(SETTINGS)
                   for p in self.evaluate.paths(target.value, scope)):
                self.report(TAMPERING, target, source)
        elif isinstance(target, ast.Subscript):
            if any(_protected(p) or p == "sys.modules" for p in self.evaluate.dict_base(target, scope) | self.evaluate.paths(target.value, scope)):
                self.report(TAMPERING, target, source)


def _guarded(visit, node: ast.AST, scope: _Scope, source: _Source) -> None:
    """Code nested too deeply to walk is left to the runtime recorders."""
    try:
        visit(node, scope, source)
    except RecursionError:
        pass


def _tampers(path: str) -> bool:
    return path.startswith(TAMPER_MODULES) or any(segment in TAMPER_NAMES for segment in path.split("."))


def _protected(path: str) -> bool:
    """Objects whose attributes a student must not rewrite: torch's modules and classes, builtins."""
    return _torch_rooted(path) or path in ("builtins", "sys.modules") or path.startswith("builtins.")
