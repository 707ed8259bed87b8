"""The package drawn from its imports reads top-down (CONTRIBUTING.md, "The architecture in one
picture"): front ends -> grading -> submission / sandbox / report -> course, no module imports
upward, no private name is imported across modules, the worker imports nothing else of the
package, and no exercise is named in the engine outside its declaration and its suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from autograder.course.registry import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autograder"

#: Layer of each part of the package: a module may import from its own layer or a lower one.
LAYERS = {
    "frontends": 4, "public": 4, "__main__": 4,
    "grading": 3, "suites": 3,
    "submission": 2, "sandbox": 2, "report": 2,
    "course": 1, "hidden": 1,
    "errors": 0, "limits": 0, "safeio": 0, "__init__": 0,
}


def _part(module: str) -> str:
    """``autograder.grading.engine`` -> ``grading``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__" and len(parts) > 2:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every import of the package in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.startswith("autograder")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("autograder"):
                found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def _resolve(target: str, name: str) -> str:
    """``from autograder.grading import engine`` imports the module ``autograder.grading.engine``."""
    return f"{target}.{name}" if f"{target}.{name}" in MODULES else target


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("autograder.worker")])
def test_no_module_imports_upward(module):
    layer = LAYERS[_part(module)]
    for target, names, line in _imports(module, MODULES[module]):
        for imported in [_resolve(target, n) for n in names] or [target]:
            if imported.startswith("autograder.worker"):
                continue  # the worker's protocol and harness are data formats both sides share
            assert LAYERS[_part(imported)] <= layer, (
                f"{module}:{line} imports {imported}, a higher layer ({_part(imported)} above {_part(module)})")


@pytest.mark.parametrize("module", list(MODULES))
def test_no_private_name_is_imported_across_modules(module):
    for target, names, line in _imports(module, MODULES[module]):
        private = [n for n in names if n.startswith("_") and not n.startswith("__") and _resolve(target, n) == target]
        assert not private, f"{module}:{line} imports private {private} from {target}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("autograder.worker")])
def test_the_worker_imports_nothing_else_of_the_package(module):
    for target, _, line in _imports(module, MODULES[module]):
        assert target.startswith("autograder.worker"), f"{module}:{line} imports {target}"


def test_no_exercise_is_named_in_the_engine():
    """Exercise names appear in their declaration and their suite; the engine reads conventions."""
    names = re.compile(r"\b(" + "|".join(re.escape(e.name) for e in EXERCISES) + r")\b")
    for module, path in MODULES.items():
        if module.startswith(("autograder.suites", "autograder.course.registry")):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            stripped = code.strip()
            if not stripped or stripped.startswith(('"', "'", "``", "-")) or not re.search(r"[=(\[{]|if |in ", code):
                continue
            # string literals inside code: an exercise name there is a name-keyed branch
            for literal in re.findall(r"\"([^\"]*)\"|'([^']*)'", code):
                text = literal[0] or literal[1]
                assert not names.fullmatch(text), f"{module}:{number} names exercise {text!r}: {line.strip()}"
