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
  attributes of torch modules, ``sys.modules`` or ``builtins``, reloading modules);
- ``TOO_COMPLEX``: the scan ran out of time, which counts as forbidden like the constructs above.

An exercise with nothing forbidden has nothing to verify: its scan is empty. This is a policy check
reported with evidence, not a security boundary (the runtime recorders back it up).

The pieces, all working on one parse of the submission (a ``Program``):

- ``findings``: ``Finding`` and the kinds of finding above;
- ``policy``: what is protected and what is tampering, the torch settings a student may assign,
  what an unbound name conventionally is, the builtins that run or import code;
- ``program``: the program model (cells, module-level bindings, scopes met on the way) and the
  time budget (``tick``, ``Exhausted``); ``scopes``: the names a function or class scope binds;
- ``evaluate``: expressions resolved to the dotted paths and constant strings they may evaluate to
  (``strings``: how constant strings combine);
- ``matcher``: a path or method name matched against the exercise's forbidden routines;
- ``walkers``: the graded walk (from the graded function, through what it reaches) and the tamper
  walk (every cell), which report the findings.
"""

from __future__ import annotations

import ast
from typing import Sequence

from autograder.course.registry import Forbidden
from autograder.submission.scan.findings import (DYNAMIC_ATTRIBUTE, DYNAMIC_CODE, DYNAMIC_IMPORT, TAMPERING,
                                                 TOO_COMPLEX, Finding)
from autograder.submission.scan.matcher import Matcher
from autograder.submission.scan.program import Exhausted, Program
from autograder.submission.scan.walkers import GradedScan, TamperScan

__all__ = ["scan", "Finding", "TAMPERING", "DYNAMIC_CODE", "DYNAMIC_ATTRIBUTE", "DYNAMIC_IMPORT", "TOO_COMPLEX"]


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
        program = Program(cells, deadline, trees)
        GradedScan(program, Matcher(forbidden), findings).run(function)
        TamperScan(program, findings).run()
    except Exhausted:
        findings[(TOO_COMPLEX, -1, 0)] = Finding(TOO_COMPLEX, -1, 0, "the static check ran out of time")
    return sorted(findings.values(), key=lambda f: (f.cell, f.line, f.call))
