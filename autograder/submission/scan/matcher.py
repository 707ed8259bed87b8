"""Matching a dotted path or a method name against an exercise's forbidden routines."""

from __future__ import annotations

from typing import Sequence

from autograder.course.registry import Forbidden
from autograder.submission.scan.policy import torch_rooted
from autograder.worker.recorders import routine_of


class Matcher:
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
        if torch_rooted(path):
            obj = routine_of(path)
            entry = self.objects.get(id(obj)) if obj is not None else None
            if entry is not None and entry[0] is obj:
                return entry[1]
        return None

    def method(self, name: str) -> str | None:
        return self.methods.get(name)
