"""What the worker's recorders look for, derived from the registry, and how their hits map back.

The sandboxed worker has no registry: the grader sends it three plain lists per exercise
(``patterns_for``, ``aten_for``, ``sentinels_for``) and receives hit strings such as
``"torch.nn.functional.softmax (seen by the torch-function recorder)"``, which ``name_for`` turns
back into the registry's ``Forbidden.name`` for the feedback.
"""

from __future__ import annotations

import functools
import inspect
import types

from autograder.course.registry import BY_NAME, Exercise
from autograder.worker.recorders import routine_of

#: Python functions that consult ``__torch_function__`` call this; those that never do are
#: invisible to the torch-function recorder and need a sentinel.
_DISPATCHES = "handle_torch_function"


def exercise_of(exercise: Exercise | str) -> Exercise:
    return BY_NAME[exercise] if isinstance(exercise, str) else exercise


def patterns_for(exercise: Exercise | str) -> list[str]:
    """Every qualified name to record (``Forbidden.all_patterns()``), in registry order."""
    return list(dict.fromkeys(p for f in exercise_of(exercise).forbidden for p in f.all_patterns()))


def aten_for(exercise: Exercise | str) -> list[str]:
    """The ATen operator prefixes to record at the dispatcher."""
    return list(dict.fromkeys(op for f in exercise_of(exercise).forbidden for op in f.aten))


def sentinels_for(exercise: Exercise | str) -> list[str]:
    """The patterns naming Python-level routines that neither torch mode can see.

    A class is never seen by the modes (so ``torch.nn.Softmax`` and ``torch.optim.Adam`` get
    sentinels); a Python function is seen only if it dispatches through ``handle_torch_function``
    (``torch.nn.functional.softmax`` does, ``clip_grad_norm_`` and ``torch.optim.adam.adam`` do not);
    a builtin always is.
    """
    return list(_sentinels(exercise_of(exercise).name))


@functools.lru_cache(maxsize=None)
def _sentinels(name: str) -> tuple[str, ...]:
    return tuple(p for p in patterns_for(name) if _needs_sentinel(p))


def _needs_sentinel(pattern: str) -> bool:
    obj = routine_of(pattern)
    if isinstance(obj, type):
        return True
    function = inspect.unwrap(obj) if obj is not None else None
    if isinstance(function, types.FunctionType):
        return _DISPATCHES not in function.__code__.co_names
    return False


def name_for(exercise: Exercise | str, hit: str) -> str:
    """The registry's ``Forbidden.name`` for a recorder hit (``"<pattern or op> (seen by ...)"``).

    Raises ``ValueError`` for a hit that names nothing forbidden in this exercise (the worker is
    untrusted: such a string is a bug or a forgery, never a verdict).
    """
    forbidden = exercise_of(exercise).forbidden
    core = hit.split(" (", 1)[0].strip()
    core = core.removeprefix("torch._ops.ops.").removeprefix("torch.ops.")
    for f in forbidden:
        if core in f.all_patterns():
            return f.name
    if core.startswith("aten."):
        matches = [(len(prefix), f.name) for f in forbidden for prefix in f.aten if core.startswith(prefix)]
        if matches:
            return max(matches)[1]
    obj = routine_of(core)
    if obj is not None:
        for f in forbidden:
            if any(routine_of(p) is obj for p in f.all_patterns()):
                return f.name
    raise ValueError(f"{hit!r} names no forbidden routine of {exercise_of(exercise).name!r}")
