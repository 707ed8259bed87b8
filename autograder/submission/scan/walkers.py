"""Walking code with its scopes: the graded walk (forbidden routines the graded function can
reach) and the tamper walk (attempts on the recorders anywhere in the student's code)."""

from __future__ import annotations

import ast
from collections import deque

from autograder.submission.scan.evaluate import Evaluator, canonical
from autograder.submission.scan.findings import DYNAMIC_ATTRIBUTE, DYNAMIC_CODE, DYNAMIC_IMPORT, TAMPERING, Finding
from autograder.submission.scan.matcher import Matcher
from autograder.submission.scan.policy import (CODE_RUNNERS, IMPORTERS, SETTINGS, TAMPER_NAMES, protected, tampers,
                                               torch_rooted)
from autograder.submission.scan.program import Binding, Program, Source, parse, tick
from autograder.submission.scan.scopes import Scope


class Walker:
    """Visits code, keeping track of scopes; subclasses react to references, calls and stores."""

    def __init__(self, program: Program, findings: dict[tuple[str, int, int], Finding]) -> None:
        self.program = program
        self.evaluate = Evaluator(program)
        self.findings = findings

    def report(self, call: str, node: ast.AST, source: Source) -> None:
        key = (call, source.cell, source.line_of(node))
        if key not in self.findings:
            self.findings[key] = Finding(call, source.cell, key[2], source.evidence(node))

    def visit(self, node: ast.AST, scope: Scope, source: Source) -> None:
        tick(self.program)
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
                    tree = parse(code)
                    if tree is not None:
                        self.program.keep.append(tree)
                        self.visit(tree, scope, Source(source.cell, code, source.line_of(node)))
        elif isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and isinstance(node.ctx, ast.Load):
            self.on_reference(node, scope, source)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            for target in getattr(node, "targets", None) or [node.target]:
                self.on_store(target, scope, source)
        for child in ast.iter_child_nodes(node):
            self.visit(child, scope, source)

    def _runs_code(self, node: ast.Call, scope: Scope) -> bool:
        return bool(node.args) and bool(self.evaluate.paths(node.func, scope) & CODE_RUNNERS)

    def on_import(self, node: ast.Import | ast.ImportFrom, source: Source) -> None:
        pass

    def on_call(self, node: ast.Call, scope: Scope, source: Source) -> None:
        pass

    def on_reference(self, node: ast.AST, scope: Scope, source: Source) -> None:
        pass

    def on_store(self, target: ast.AST, scope: Scope, source: Source) -> None:
        pass


class GradedScan(Walker):
    """Forbidden routines reachable from the graded function."""

    def __init__(self, program: Program, matcher: Matcher, findings: dict) -> None:
        super().__init__(program, findings)
        self.matcher = matcher
        self.queue: deque[tuple[ast.AST, Source]] = deque()
        self.queued: set[int] = set()

    def run(self, function: str) -> None:
        for binding in self.program.bindings.get(function, []):
            if binding.kind == "path":
                self._check_paths({canonical(binding.value)}, binding.statement, binding.source)
            elif binding.kind in ("def", "expr"):
                self._enqueue(binding)
        while self.queue:
            node, source = self.queue.popleft()
            _guarded(self.visit, node, self.program.module, source)

    def _enqueue(self, binding: Binding) -> None:
        if id(binding.value) not in self.queued:
            self.queued.add(id(binding.value))
            self.queue.append((binding.value, binding.source))

    def _check_paths(self, paths: set[str], node: ast.AST, source: Source) -> None:
        for path in sorted(paths):
            name = self.matcher.path(path)
            if name is not None:
                self.report(name, node, source)

    def _check_method(self, name: str, node: ast.AST, source: Source) -> None:
        found = self.matcher.method(name)
        if found is not None and name not in self.program.method_names:
            self.report(found, node, source)

    def on_reference(self, node: ast.AST, scope: Scope, source: Source) -> None:
        if isinstance(node, ast.Name):
            for _, where in self.program.lookup(node.id, scope):
                if isinstance(where, Binding) and where.kind in ("def", "expr"):
                    self._enqueue(where)
        self._check_paths(self.evaluate.paths(node, scope), node, source)
        if isinstance(node, ast.Attribute) and not self.evaluate.paths(node.value, scope):
            self._check_method(node.attr, node, source)
        if isinstance(node, ast.Subscript) and self.evaluate.constants(node.slice, scope) is None:
            if any(torch_rooted(b) for b in self.evaluate.dict_base(node, scope)):
                self.report(DYNAMIC_ATTRIBUTE, node, source)

    def on_call(self, node: ast.Call, scope: Scope, source: Source) -> None:
        callee = self.evaluate.paths(node.func, scope)
        self._check_paths(callee | self.evaluate.paths(node, scope), node, source)
        if isinstance(node.func, ast.Attribute) and not self.evaluate.paths(node.func.value, scope):
            self._check_method(node.func.attr, node, source)
        args = node.args
        if callee & CODE_RUNNERS:
            self.report(DYNAMIC_CODE, node, source)
        if "builtins.getattr" in callee and len(args) >= 2:
            names = self.evaluate.constants(args[1], scope)
            bases = self.evaluate.paths(args[0], scope)
            if names is None:
                if any(torch_rooted(b) for b in bases):
                    self.report(DYNAMIC_ATTRIBUTE, node, source)
            elif not bases:
                for name in names:
                    self._check_method(name, node, source)
        if callee & IMPORTERS and args and self.evaluate.constants(args[0], scope) is None:
            self.report(DYNAMIC_IMPORT, node, source)
        if "operator.methodcaller" in callee and args:
            for name in self.evaluate.constants(args[0], scope) or ():
                self._check_method(name, node, source)
        if isinstance(node.func, ast.Call) and "operator.attrgetter" in self.evaluate.paths(node.func.func, scope):
            if node.func.args and self.evaluate.constants(node.func.args[0], scope) is None and args:
                if any(torch_rooted(b) for b in self.evaluate.paths(args[0], scope)):
                    self.report(DYNAMIC_ATTRIBUTE, node, source)


class TamperScan(Walker):
    """Attempts to disable or bypass the runtime recorders, anywhere in the student's code."""

    def run(self) -> None:
        for tree, source in self.program.trees:
            _guarded(self.visit, tree, self.program.module, source)

    def on_import(self, node: ast.Import | ast.ImportFrom, source: Source) -> None:
        paths = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [
            f"{node.module}.{alias.name}" for alias in node.names if node.module and node.level == 0]
        if any(tampers(p) for p in paths):
            self.report(TAMPERING, node, source)

    def on_reference(self, node: ast.AST, scope: Scope, source: Source) -> None:
        if isinstance(node, ast.Attribute) and node.attr in TAMPER_NAMES:
            self.report(TAMPERING, node, source)
        elif any(tampers(p) for p in self.evaluate.paths(node, scope)):
            self.report(TAMPERING, node, source)

    def on_call(self, node: ast.Call, scope: Scope, source: Source) -> None:
        callee = self.evaluate.paths(node.func, scope)
        if any(tampers(p) for p in callee | self.evaluate.paths(node, scope)):
            self.report(TAMPERING, node, source)
        if "importlib.reload" in callee:
            self.report(TAMPERING, node, source)
        writes = {"builtins.setattr", "builtins.delattr"} & callee or {
            p for p in callee if p.endswith((".__setattr__", ".__delattr__"))}
        if writes and node.args and any(protected(p) for p in self.evaluate.paths(node.args[0], scope)):
            self.report(TAMPERING, node, source)

    def on_store(self, target: ast.AST, scope: Scope, source: Source) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.on_store(element, scope, source)
        elif isinstance(target, ast.Starred):
            self.on_store(target.value, scope, source)
        elif isinstance(target, ast.Attribute):
            if any(protected(p) and not f"{p}.{target.attr}".startswith(SETTINGS)
                   for p in self.evaluate.paths(target.value, scope)):
                self.report(TAMPERING, target, source)
        elif isinstance(target, ast.Subscript):
            if any(protected(p) or p == "sys.modules" for p in self.evaluate.dict_base(target, scope) | self.evaluate.paths(target.value, scope)):
                self.report(TAMPERING, target, source)


def _guarded(visit, node: ast.AST, scope: Scope, source: Source) -> None:
    """Code nested too deeply to walk is left to the runtime recorders."""
    try:
        visit(node, scope, source)
    except RecursionError:
        pass

