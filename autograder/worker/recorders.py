"""Runtime recorders of forbidden calls, used inside the sandboxed worker.

Three mechanisms, all calling through without changing behaviour:

- a ``TorchFunctionMode`` that sees every call of a torch API routine (``torch.softmax``,
  ``torch.nn.functional.dropout``, ``Tensor.softmax``, ...) made while a graded function runs;
- a ``TorchDispatchMode`` that sees the ATen operators that reach the dispatcher
  (``aten._softmax``, ``aten.convolution``, ``aten._fused_adam_``, ...), however they were reached;
- sentinels: Python-level routines that neither mode can see (``clip_grad_norm_``,
  ``torch.optim.Adam``, module classes such as ``torch.nn.Softmax``) are replaced, once, before the
  student's code runs, by wrappers that record and call through.

This is a policy check reported with evidence, not a security boundary: code running in the same
process can always undo it. What it can notice of such attempts, ``tampered()`` reports.

The worker receives plain lists (patterns, ATen prefixes, sentinel paths) and returns the strings
of ``hits()`` and ``tampered()``; the grader maps each hit back to the registry's forbidden name.
This module imports torch and the standard library only.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import types
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

SEEN_BY_FUNCTION = "seen by the torch-function recorder"
SEEN_BY_DISPATCH = "seen by the dispatcher recorder"
SEEN_BY_SENTINEL = "seen by a sentinel"

_TENSOR_PREFIXES = ("torch.Tensor.", "Tensor.", "torch._C.TensorBase.", "TensorBase.")
_LONG_LIVED = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
    torch._ops.OpOverload, torch._ops.OpOverloadPacket,
)
_NOT_TARGETS = (types.ModuleType, type(None), bool, int, float, str, bytes, tuple, list, dict)
_MISSING = object()


def resolve_path(path: str) -> Any:
    """The object a dotted ``torch...`` path names, found without running any code, or ``None``.

    Looks only in modules already imported (their ``__dict__`` or ``sys.modules``, never a module
    ``__getattr__``) and in class dictionaries (``inspect.getattr_static``), so that looking a
    name up can neither import anything nor call a property. Used to recognise re-exports: the
    same routine reached under another name (``torch.nn.modules.activation.Softmax``).
    """
    parts = path.split(".")
    if parts[0] != "torch" or "torch" not in sys.modules:
        return None
    obj: Any = sys.modules["torch"]
    for part in parts[1:]:
        if isinstance(obj, types.ModuleType):
            found = obj.__dict__.get(part, _MISSING)
            if found is _MISSING:
                found = sys.modules.get(f"{obj.__name__}.{part}", _MISSING)
        elif isinstance(obj, type):
            found = inspect.getattr_static(obj, part, _MISSING)
        else:  # an instance such as torch._C._VariableFunctions: look in its class
            found = inspect.getattr_static(type(obj), part, _MISSING)
        if found is _MISSING:
            return None
        if isinstance(found, (staticmethod, classmethod)):
            found = found.__func__
        obj = found
    return obj


def routine_of(path: str) -> Any:
    """``resolve_path`` restricted to routines and classes (what a pattern can name), else None."""
    obj = resolve_path(path)
    if obj is None or isinstance(obj, _NOT_TARGETS) or not callable(obj):
        return None
    return obj


def _tensor_method(func: Any) -> str | None:
    """The method name when ``func`` is a ``Tensor`` method (C or Python level), else None."""
    owner = getattr(func, "__objclass__", None)
    if isinstance(owner, type) and issubclass(owner, torch._C.TensorBase):
        return getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", None)
    if isinstance(qualname, str) and qualname.count(".") == 1:
        cls, name = qualname.split(".")
        if cls in ("Tensor", "TensorBase") and getattr(func, "__module__", None) in (None, "torch._tensor", "torch._C"):
            return name
    return None


def names_of(func: Any) -> list[str]:
    """Qualified names under which a routine seen by the torch-function mode may be declared."""
    names: list[str] = []
    if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        names.append("torch.ops." + str(func))
    method = _tensor_method(func)
    if method is not None:
        names += [prefix + method for prefix in _TENSOR_PREFIXES] + ["." + method]
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if isinstance(qualname, str):
        if qualname.startswith("_VariableFunctionsClass."):
            short = qualname.split(".", 1)[1]
            names += ["torch." + short, "torch._C._VariableFunctions." + short]
        if isinstance(module, str):
            names.append(f"{module}.{qualname}")
    return names


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.recorder._saw_function(func)
        return func(*args, **(kwargs or {}))


class _DispatchRecorder(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Otherwise torch wraps the hook in ``torch._disable_dynamo``, whose first call imports
        # torch._dynamo (about 900 modules, seconds) in every fresh worker.
        return False

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.recorder._saw_op(func)
        inside = _INSIDE_DISPATCH.__dict__
        inside["depth"] = inside.get("depth", 0) + 1  # our mode is off the stack meanwhile
        try:
            return func(*args, **(kwargs or {}))
        finally:
            inside["depth"] -= 1


_INSIDE_DISPATCH = threading.local()  # depth of our dispatch hook's call-through, per thread
_TORCH_FUNCTION_HOOK = _FunctionRecorder.__dict__["__torch_function__"]
_TORCH_DISPATCH_HOOK = _DispatchRecorder.__dict__["__torch_dispatch__"]


class Recorder:
    """Records forbidden routines used while a graded function runs.

    ``patterns``: qualified names (``torch.nn.functional.softmax``; ``.softmax`` means any Tensor
    method of that name); ``aten``: prefixes of ``str(op)`` (``aten._softmax``); ``sentinels``:
    dotted paths of Python-level functions and classes to wrap (classes: ``__init__`` plus
    ``forward`` for modules and ``step`` for optimizers).
    """

    def __init__(self, patterns: list[str], aten: list[str], sentinels: list[str]) -> None:
        self.patterns = list(dict.fromkeys(patterns))
        self.aten = tuple(dict.fromkeys(aten))
        self.sentinels = list(dict.fromkeys(sentinels))
        self._exact = set(self.patterns)
        self._by_object: dict[int, tuple[Any, str]] = {}
        self._verdicts: dict[Any, str | None] = {}  # torch-function callable -> matched pattern
        self._op_verdicts: dict[Any, str | None] = {}  # ATen operator -> its name if forbidden
        self._hits: list[str] = []
        self._tampered: list[str] = []
        self._labels: dict[int, str] = {}  # id(original routine) -> the sentinel path to report
        self._dispatch_depth = 0  # dispatch mode stack length with our mode on it
        self._installed: list[tuple[Any, str, Any, str]] = []  # (owner, attribute, wrapper, label)
        # (file, first line, name) of each sentinel routine's own code -> label: a copy made by
        # re-executing torch's source (runpy, exec of the file, a fresh import) or by rebuilding a
        # function around its code object has new function objects but the same code origin.
        self._codes: dict[tuple[str, int, str], str] = {}
        self._profiler = self._profile  # one bound method: compared by identity

    # -- results ---------------------------------------------------------------------------------

    def hits(self) -> list[str]:
        """Forbidden routines seen, deduplicated, as ``"<pattern> (seen by ...)"``."""
        return list(dict.fromkeys(self._hits))

    def tampered(self) -> list[str]:
        """What was noticed of attempts to disable or bypass the recorders."""
        return list(dict.fromkeys(self._tampered))

    def clear(self) -> None:
        """Forget the hits and tampering noted so far (between graded calls); stays installed."""
        self._hits.clear()
        self._tampered.clear()

    # -- setup -----------------------------------------------------------------------------------

    def install(self) -> None:
        """Resolve the patterns and wrap the sentinels; call once, before the student's code runs.

        Each routine is wrapped once per process (recorders share the wrappers), and every
        reference an imported torch module holds is replaced, so that re-exports and any later
        ``from torch... import name`` reach the wrapper.
        """
        for pattern in self.patterns:
            obj = routine_of(pattern)
            if obj is not None:
                self._by_object.setdefault(id(obj), (obj, pattern))
        functions: dict[int, tuple[Any, Any]] = {}  # id(original) -> (original, wrapper)
        for path in self.sentinels:
            obj = routine_of(path)
            if obj is None:
                continue
            if isinstance(obj, type):
                self._wrap_class(obj, path)
            else:
                original = _original(obj)
                self._labels.setdefault(id(original), path)
                self._note_code(original, path)
                functions[id(original)] = (original, _wrapper(original))
        targets = {id(obj): entry for entry in functions.values() for obj in entry}  # original or wrapper
        for module in [m for name, m in list(sys.modules.items()) if name.split(".")[0] == "torch"]:
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for attribute, value in list(namespace.items()):
                entry = targets.get(id(value))
                if entry is None or not (value is entry[0] or value is entry[1]):
                    continue
                if value is not entry[1]:
                    setattr(module, attribute, entry[1])
                self._installed.append((module, attribute, entry[1], f"{module.__name__}.{attribute}"))

    def _wrap_class(self, cls: type, label: str) -> None:
        members = ["__init__"]
        if issubclass(cls, torch.nn.Module):
            members.append("forward")
        if issubclass(cls, torch.optim.Optimizer):
            members.append("step")
        for member in members:
            current = cls.__dict__.get(member)
            if current is None:
                continue  # inherited: the base class's sentinel (if any) records it
            original = _original(current)
            self._labels.setdefault(id(original), label)
            self._note_code(original, label)
            wrapper = _wrapper(original)
            if not _reaches(current, wrapper):
                setattr(cls, member, wrapper)
            self._installed.append((cls, member, wrapper, f"{cls.__module__}.{cls.__qualname__}.{member}"))

    def _note_code(self, routine: Any, label: str) -> None:
        code = None
        for link in _chain(routine):  # the innermost function: decorators' code is shared by many
            code = getattr(link, "__code__", None) or code
        if isinstance(code, types.CodeType):
            self._codes.setdefault(_origin(code), label)

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        """sys.setprofile hook during a graded call: a call of any function whose code comes from a
        sentinel routine's source (the routine itself, or a copy) is a hit."""
        if event == "call":
            label = self._codes.get(_origin(frame.f_code))
            if label is not None:
                self._hits.append(f"{label} ({SEEN_BY_SENTINEL})")

    # -- recording -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def recording(self) -> Iterator[Recorder]:
        """Record around one call of a graded function (both modes pushed, sentinels armed)."""
        function_mode, dispatch_mode = _FunctionRecorder(self), _DispatchRecorder(self)
        before_functions = _get_current_function_mode_stack()
        before_dispatch = _get_current_dispatch_mode_stack()
        tracers = (sys.gettrace(), sys.getprofile())
        disabled = torch._C._is_torch_function_all_disabled()
        function_mode.__enter__()
        dispatch_mode.__enter__()
        self._dispatch_depth = torch._C._len_torch_dispatch_stack()
        _ACTIVE.append(self)
        profiling = bool(self._codes)
        if profiling:
            sys.setprofile(self._profiler)
        try:
            yield self
        finally:
            if profiling:
                if sys.getprofile() is not self._profiler:
                    self._tampered.append("the sentinels' profile hook was replaced (sys.setprofile)")
                sys.setprofile(tracers[1])
            with contextlib.suppress(ValueError):
                _ACTIVE.remove(self)
            functions_ok = _get_current_function_mode_stack() == [*before_functions, function_mode]
            dispatch_ok = _get_current_dispatch_mode_stack() == [*before_dispatch, dispatch_mode]
            self._check(function_mode, dispatch_mode, functions_ok, dispatch_ok, tracers, disabled)
            if dispatch_ok:
                dispatch_mode.__exit__(None, None, None)
            else:
                _restore(torch._C._len_torch_dispatch_stack, torch._C._pop_torch_dispatch_stack,
                         torch._C._push_on_torch_dispatch_stack, before_dispatch)
            if functions_ok:
                function_mode.__exit__(None, None, None)
            else:
                _restore(torch._C._len_torch_function_stack, torch._C._pop_torch_function_stack,
                         torch._C._push_on_torch_function_stack, before_functions)

    def _check(self, function_mode, dispatch_mode, functions_ok, dispatch_ok, tracers, disabled) -> None:
        """Note what changed during the call, and put the recorders' own pieces back."""
        note = self._tampered.append
        if not functions_ok:
            note("the torch-function mode stack was changed during the call (recorder popped or replaced)")
        if not dispatch_ok:
            note("the dispatch mode stack was changed during the call (recorder popped or replaced)")
        if torch._C._is_torch_function_all_disabled() and not disabled:
            note("torch-function handling was left disabled (DisableTorchFunction)")
        for mode, cls, hook, name in ((function_mode, _FunctionRecorder, _TORCH_FUNCTION_HOOK, "__torch_function__"),
                                      (dispatch_mode, _DispatchRecorder, _TORCH_DISPATCH_HOOK, "__torch_dispatch__")):
            if cls.__dict__.get(name) is not hook or name in vars(mode) or type(mode) is not cls:
                note(f"the recorder's {name} hook was replaced")
                with contextlib.suppress(Exception):
                    setattr(cls, name, hook)
        if (sys.gettrace(), sys.getprofile()) != tracers:
            note("a trace or profile function was installed (sys.settrace / sys.setprofile)")
        for owner, attribute, wrapper, label in self._installed:
            if not _reaches(vars(owner).get(attribute), wrapper):
                note(f"the sentinel {label} was replaced")
                with contextlib.suppress(Exception):
                    setattr(owner, attribute, wrapper)

    def _saw_function(self, func: Any) -> None:
        try:
            if not _INSIDE_DISPATCH.__dict__.get("depth") and (
                torch._C._len_torch_dispatch_stack() < self._dispatch_depth
                or torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python)
            ):
                self._tampered.append("the dispatcher recorder was disabled or popped during the call")
            if isinstance(func, _LONG_LIVED):  # cache the verdict; other callables are per-access
                if func not in self._verdicts:
                    self._verdicts[func] = self._match_function(func)
                pattern = self._verdicts[func]
            else:
                pattern = self._match_function(func)
            if pattern is not None:
                self._hits.append(f"{pattern} ({SEEN_BY_FUNCTION})")
        except Exception:  # recording must never change what the student's code does
            pass

    def _match_function(self, func: Any) -> str | None:
        for name in names_of(func):
            if name in self._exact:
                return name
        entry = self._by_object.get(id(func))
        if entry is not None and entry[0] is func:
            return entry[1]
        if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
            return _aten_match(str(func), self.aten)
        return None

    def _saw_op(self, func: Any) -> None:
        try:
            if torch._C._is_torch_function_all_disabled():
                self._tampered.append("torch-function handling was disabled during the call (DisableTorchFunction)")
            if func not in self._op_verdicts:
                self._op_verdicts[func] = _aten_match(str(func), self.aten)
            name = self._op_verdicts[func]
            if name is not None:
                self._hits.append(f"{name} ({SEEN_BY_DISPATCH})")
        except Exception:
            pass


def _origin(code: Any) -> tuple[str, int, str]:
    return (code.co_filename, code.co_firstlineno, code.co_name)


def _aten_match(op: str, prefixes: tuple[str, ...]) -> str | None:
    return next((op for prefix in prefixes if op.startswith(prefix)), None)


# Sentinel wrappers, shared by every Recorder of the process.
_ACTIVE: list[Recorder] = []  # recorders inside recording()
_WRAPPER_OF: dict[int, tuple[Any, Any]] = {}  # id(original) -> (original, wrapper)
_ORIGINAL_OF: dict[int, tuple[Any, Any]] = {}  # id(wrapper) -> (wrapper, original)


def _wrapper(original: Any) -> Any:
    """The recording wrapper of a routine (made once per process), calling through to it."""
    entry = _WRAPPER_OF.get(id(original))
    if entry is not None and entry[0] is original:
        return entry[1]
    key = id(original)

    @functools.wraps(original)
    def sentinel(*args, **kwargs):
        for recorder in list(_ACTIVE):
            label = recorder._labels.get(key)
            if label is not None:
                recorder._hits.append(f"{label} ({SEEN_BY_SENTINEL})")
        return original(*args, **kwargs)

    # No __wrapped__: it would hand the original to anyone who asks for it.
    sentinel.__dict__.pop("__wrapped__", None)
    with contextlib.suppress(TypeError, ValueError):
        sentinel.__signature__ = inspect.signature(original)
    _WRAPPER_OF[key] = (original, sentinel)
    _ORIGINAL_OF[id(sentinel)] = (sentinel, original)
    return sentinel


def _chain(obj: Any) -> Iterator[Any]:
    """``obj`` and what it wraps (``functools.wraps``' ``__wrapped__``), a few levels deep."""
    for _ in range(8):
        if obj is None:
            return
        yield obj
        try:  # static lookup: no module __getattr__ or property runs
            obj = inspect.getattr_static(obj, "__wrapped__", None)
        except Exception:
            return


def _original(obj: Any) -> Any:
    """The routine behind a sentinel wrapper (possibly wrapped again by torch), else ``obj``."""
    for link in _chain(obj):
        entry = _ORIGINAL_OF.get(id(link))
        if entry is not None and entry[0] is link:
            return entry[1]
    return obj


def _reaches(current: Any, wrapper: Any) -> bool:
    """True if ``current`` is the wrapper or wraps it, e.g. torch's optimizer step hook."""
    return any(link is wrapper for link in _chain(current))


def _restore(length, pop, push, modes: list[Any]) -> None:
    """Put a mode stack back as it was before the call (after a student changed it)."""
    with contextlib.suppress(Exception):
        while length() > 0:
            pop()
        for mode in modes:
            push(mode)
