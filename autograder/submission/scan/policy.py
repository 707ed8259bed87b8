"""What the scan treats specially: the recorders' machinery (touching it is tampering), the objects
a student must not rewrite and the torch settings they may, what an unbound name most likely is,
and the builtins that run or import code whose text the scan may not know."""

from __future__ import annotations

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

#: Routines that run a string as code, and routines that import a module named by a string.
CODE_RUNNERS = frozenset({"builtins.eval", "builtins.exec", "builtins.compile"})
IMPORTERS = frozenset({"importlib.import_module", "builtins.__import__", "importlib.__import__"})


def torch_rooted(path: str) -> bool:
    return path == "torch" or path.startswith("torch.")


def tampers(path: str) -> bool:
    return path.startswith(TAMPER_MODULES) or any(segment in TAMPER_NAMES for segment in path.split("."))


def protected(path: str) -> bool:
    """Objects whose attributes a student must not rewrite: torch's modules and classes, builtins."""
    return torch_rooted(path) or path in ("builtins", "sys.modules") or path.startswith("builtins.")
