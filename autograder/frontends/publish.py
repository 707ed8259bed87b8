"""``python -m autograder publish DIR [--bundle]``: the repository students get.

The course repository stays private: it holds ``solutions/``, ``reference/``, the hidden suites,
the tests' known implementations and sample answers. Students get a repository built from it, as
stages:

1. **collect** what students need: the released notebooks the registry declares
   (``assignments/<id>/<notebook>``), the ``autograder`` package without its hidden suites (public
   checks, and the engine the pull-request workflow grades with once it has restored the suites),
   ``requirements.txt`` and the pull-request workflow;
2. **verify** that no graded function in what is collected has a body: each must still be the stub
   (``raise NotImplementedError``); publishing refuses otherwise;
3. **write** the files, and generated ones: the students' ``README.md``, ``Makefile`` and
   ``.gitignore``;
4. **bundle** (``--bundle``): the hidden suites and the reference, as a tar archive encrypted with
   ``gpg --symmetric`` for the workflow (``docs/ci.md``); the passphrase comes from the environment
   (``HIDDEN_SUITES_KEY``) through a pipe, and is written nowhere;
5. **commit**: a new git repository with one commit, so no history of the course comes along.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from autograder import hidden
from autograder.course import registry
from autograder.errors import INTERNAL, UnusableInput

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ".github/workflows/grade-pr.yml"
BUNDLE = ".github/hidden-suites.tar.gz.gpg"
KEY_ENV = "HIDDEN_SUITES_KEY"
MIN_KEY_LENGTH = 20
#: Files copied as they are, besides the notebooks and the package.
COPIED = ("requirements.txt", WORKFLOW, "docs/ci.md")
PACKAGE = "autograder"
SKIPPED_PARTS = ("__pycache__", ".ipynb_checkpoints")
GIT_IDENTITY = ("Course staff", "course-staff@example.invalid")
STUB_EXCEPTIONS = ("NotImplementedError",)


@dataclass(frozen=True)
class Published:
    folder: Path
    commit: str
    notebooks: list[str]
    files: int
    bundle: bool


# ------------------------------------------------------------------------------------ collect
def _regular_files(folder: Path) -> Iterable[Path]:
    """Regular files under ``folder``, sorted; symbolic links and caches are never followed or taken."""
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in SKIPPED_PARTS for part in relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if any(parent.is_symlink() for parent in path.relative_to(folder).parents if parent != Path(".")):
            continue
        yield path


def notebooks(root: Path = ROOT) -> list[str]:
    """The released notebooks the registry declares, relative to the course root."""
    out = []
    for assignment, exercises in registry.assignments().items():
        for name in sorted({e.notebook for e in exercises}):
            out.append(f"assignments/{assignment}/{name}")
    return out


def collect(root: Path = ROOT) -> dict[str, bytes]:
    """Relative path -> content of every file copied from the course."""
    for needed in (*hidden.PATHS, "solutions"):
        if not (root / needed).is_dir():
            raise UnusableInput(f"{root} is not the course repository ({needed}/ is missing); publish from the course")
    files: dict[str, bytes] = {}
    for relative in notebooks(root):
        path = root / relative
        if path.is_symlink() or not path.is_file():
            raise UnusableInput(f"{relative} is missing: release it first (`make assignments`)")
        files[relative] = path.read_bytes()
        for data in sorted(path.parent.iterdir()):  # the data files its demos read (released beside it)
            if data.is_file() and not data.is_symlink() and data.suffix != ".ipynb":
                files[data.relative_to(root).as_posix()] = data.read_bytes()
    hidden_prefixes = tuple(p + "/" for p in hidden.PATHS)
    for path in _regular_files(root / PACKAGE):
        relative = path.relative_to(root).as_posix()
        if not relative.startswith(hidden_prefixes):
            files[relative] = path.read_bytes()
    for relative in COPIED:
        path = root / relative
        if path.is_symlink() or not path.is_file():
            raise UnusableInput(f"{relative} is missing from the course")
        files[relative] = path.read_bytes()
    return files


# ------------------------------------------------------------------------------------- verify
def _is_stub(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    for statement in body:
        if isinstance(statement, ast.Pass) or (isinstance(statement, ast.Expr)
                                               and isinstance(statement.value, ast.Constant)):
            continue
        if isinstance(statement, ast.Raise) and statement.exc is not None:
            exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
            if isinstance(exc, ast.Name) and exc.id in STUB_EXCEPTIONS:
                continue
        return False
    return True


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [a.arg for a in (*function.args.posonlyargs, *function.args.args)]


def _contract(name: str) -> list[str]:
    return [p.split("=")[0].strip() for p in registry.BY_NAME[name].signature.split(",")]


def implemented_in_source(source: str, *, any_signature: bool) -> list[str]:
    """Graded functions defined with a body (not a stub) in Python ``source``.

    In notebooks every definition of a graded name counts (``any_signature``); in the package only
    those with the contract's parameters (a grading harness may share an exercise's name).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in registry.BY_NAME:
            if (any_signature or _parameters(node) == _contract(node.name)) and not _is_stub(node):
                found.append(f"{node.name} (line {node.lineno})")
    return found


def notebook_code(data: bytes) -> list[str]:
    """The code cells of a notebook, as Python (IPython magics neutralised), or [] if unreadable."""
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return []
    out = []
    for cell in nb.get("cells", []) if isinstance(nb, dict) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else str(source)
            out.append("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in text.split("\n")))
    return out


def implemented(files: dict[str, bytes]) -> list[str]:
    """Every implemented graded function in ``files`` (path -> content), one line each."""
    found = []
    for relative, data in sorted(files.items()):
        if relative.endswith(".ipynb"):
            for number, code in enumerate(notebook_code(data), start=1):
                found += [f"{relative}, code cell {number}: {f}" for f in implemented_in_source(code, any_signature=True)]
        elif relative.endswith(".py"):
            text = data.decode("utf-8", "replace")
            found += [f"{relative}: {f}" for f in implemented_in_source(text, any_signature=False)]
    return found


# -------------------------------------------------------------------------------------- write
def readme(names: list[str]) -> str:
    """The students' README: how to work, check, submit, and read the score comment."""
    by_notebook: dict[str, list[registry.Exercise]] = {}
    for exercise in registry.EXERCISES:
        by_notebook.setdefault(f"assignments/{exercise.notebook_path}", []).append(exercise)
    rows = []
    for path in names:
        exercises = by_notebook.get(path, [])
        functions = ", ".join(f"`{e.name}`" for e in exercises)
        total = sum(e.points for e in exercises)
        rows.append(f"| [`{path}`]({path}) | {functions} | {total} |")
    first = names[0] if names else "assignments/ID/NOTEBOOK.ipynb"
    return README.format(table="\n".join(rows), first=first, internal=INTERNAL)


README = """\
# Deep learning with PyTorch: your assignments

Each notebook below has functions for you to write. A grader compares what your functions return,
**and their gradients**, with a reference implementation, in hidden tests that you submit to by pull
request. This repository holds everything you need to work and to check your work; it does not hold
the hidden tests.

| notebook | functions to write | points |
|---|---|---:|
{table}

## Set up, once

You need Python 3.11 or newer and `make`.

```bash
make venv
```

This creates `.venv/` with the course's pinned packages (PyTorch, Jupyter...). Where it runs as root
on Debian or Ubuntu it also installs `bubblewrap`, which lets `check` run your code in the same kind
of sandbox as the grader; without it, `check` runs your code directly, which is fine for practice.

## Work in Jupyter

Open a notebook with this exact command, from the folder of this README:

```bash
.venv/bin/jupyter lab {first}
```

(or `make lab` to browse every assignment). In each notebook, replace every
`raise NotImplementedError()` with your code, then run the check cell under the function: it runs the
public examples and says what is wrong. Do not edit the locked cells, and keep the notebook's name
and folder: the grader only grades `assignments/<assignment>/<notebook>.ipynb` as released.

## Check from a terminal

```bash
.venv/bin/python -m autograder check {first}
make check                      # every notebook
make check NB={first}           # one notebook
```

**What `check` tells you**: for each function, whether it gives the right result on the public
examples printed in the notebook (compared as `torch.testing.assert_close` does: type, shape, dtype,
device, then values), and if not, which example, which quantity, the largest mismatch and where it
is. It also reports cells that do not run.

**What it does not tell you**: your grade. The graded tests are hidden and use new random inputs on
every run; they also check gradients, float32 and float64, the device of the result, batches,
non-contiguous inputs, large and masked values, that your inputs are not modified, statistics (for
random functions), and that you do not call a library routine that does the exercise for you. Passing
`check` is a good start, not a promise of full marks.

`python -m autograder grade` does not work here, on purpose: this repository has no hidden tests,
so it refuses (exit status 2) instead of printing a score that would mean nothing.

## Submit by pull request

1. Work on a branch (or your fork): `git switch -c my-work`.
2. Commit your notebooks where they are: `git add assignments && git commit -m "assignment 01"`.
3. Push, and open a pull request into `main`.

Every push to the pull request is graded again. Only the course notebooks under `assignments/` are
graded; other changes are listed in the report but never run. A renamed or copied notebook is not
graded: keep the released file names.

## The score comment

A comment on your pull request, updated after every push, shows:

- a table with each changed notebook, its result (`graded`, `could not be graded`, `not graded`) and
  its score, and the total;
- for each notebook, a table of its functions with their points and status: **passed**, **partial**
  (some hidden tests passed), **failed**, **not attempted** (the stub is still there), **forbidden**
  (it calls a routine the exercise forbids: 0 points for that function), **timeout** (it ran too
  long), **error** (it crashed the grader's worker);
- for each function that did not pass, the hidden tests that failed, each with what went wrong,
  where, by how much, and what was allowed. It never shows the hidden inputs or the tests' code.

`could not be graded` means the notebook itself could not be read (not valid JSON, say): fix the file
and push again. A line saying *{internal}*, or *grading could not run*,
is the course's problem, not yours: tell the course staff, and nothing is counted against you. The
score in the comment is the grader's; your course staff tell you which push counts.
"""

MAKEFILE = """\
# Set up and check your work (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
NOTEBOOKS := $(sort $(wildcard assignments/*/*.ipynb))
NB ?= $(NOTEBOOKS)

.PHONY: venv check lab system-deps

venv: $(STAMP)

$(STAMP): requirements.txt
\t$(MAKE) system-deps
\ttest -x $(PY) || $(PYTHON) -m venv $(VENV)
\t$(PY) -m pip install --quiet --upgrade pip
\t$(PY) -m pip install --quiet -r requirements.txt
\t$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
\ttouch $(STAMP)

# bubblewrap: the sandbox of the grader (used by `check` when present); installed where possible.
system-deps:
\t@command -v bwrap >/dev/null 2>&1 || { \\
\t  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \\
\t    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null \\
\t      || echo "note: could not install bubblewrap; check will run without the sandbox"; \\
\t  else echo "note: bubblewrap is not installed; check will run without the sandbox"; fi; }

# The public checks of every notebook, or of NB=assignments/<id>/<notebook>.ipynb.
# (An existing .venv is used as it is; `make venv` updates it after requirements.txt changes.)
check:
\t@test -x $(PY) || $(MAKE) venv
\t@for notebook in $(NB); do $(PY) -m autograder check "$$notebook" || exit 1; done

lab:
\t@test -x $(PY) || $(MAKE) venv
\t$(VENV)/bin/jupyter lab assignments
"""

GITIGNORE = """\
.venv/
__pycache__/
*.pyc
.ipynb_checkpoints/
reports/
"""


# ------------------------------------------------------------------------------------- bundle
def bundle_archive(root: Path = ROOT) -> bytes:
    """A gzipped tar of the hidden material (``hidden.PATHS``), as the workflow extracts it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for folder in hidden.PATHS:
            for path in _regular_files(root / folder):
                info = tarfile.TarInfo(path.relative_to(root).as_posix())
                data = path.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def passphrase(variable: str = KEY_ENV) -> str:
    key = os.environ.get(variable, "")
    if not key:
        raise UnusableInput(f"--bundle needs the passphrase in the environment variable {variable} "
                            f"(for example: export {variable}=\"$(openssl rand -base64 48)\"; store the same value as "
                            f"the {KEY_ENV} secret of the grading environment, docs/ci.md)")
    if "\n" in key or "\r" in key or "\0" in key:
        raise UnusableInput(f"{variable} must be a single line")
    if len(key) < MIN_KEY_LENGTH:
        raise UnusableInput(f"{variable} is too short ({len(key)} characters; use at least {MIN_KEY_LENGTH}, "
                            "for example `openssl rand -base64 48`)")
    return key


def encrypt(data: bytes, key: str, output: Path) -> None:
    """``gpg --symmetric --cipher-algo AES256`` of ``data`` into ``output``; the key goes through a pipe.

    A throw-away gpg home keeps the instructor's keyring out of it, and ``--no-symkey-cache`` keeps
    the passphrase out of gpg-agent's cache.
    """
    with tempfile.TemporaryDirectory(prefix="autograder-gpg-") as home:
        read_end, write_end = os.pipe()
        command = ["gpg", "--homedir", home, "--batch", "--quiet", "--yes", "--no-symkey-cache",
                   "--pinentry-mode", "loopback", "--passphrase-fd", str(read_end),
                   "--symmetric", "--cipher-algo", "AES256", "--output", str(output)]
        try:
            try:
                process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, pass_fds=(read_end,))
            except FileNotFoundError:
                raise UnusableInput("--bundle needs gpg (Debian/Ubuntu package `gnupg`)") from None
            finally:
                os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                write_end = -1
                pipe.write(key.encode("utf-8"))
            _, errors = process.communicate(data)
        finally:
            if write_end != -1:
                os.close(write_end)
            subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
        if process.returncode != 0:
            raise UnusableInput(f"gpg could not encrypt the bundle: {errors.decode('utf-8', 'replace').strip()[:300]}")


# ------------------------------------------------------------------------------------- commit
def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise UnusableInput(f"git {args[0]} failed in {folder}: {(done.stderr or done.stdout).strip()[:300]}")
    return done.stdout.strip()


def commit(folder: Path, message: str) -> str:
    """A new repository in ``folder`` with everything in one commit on ``main``; returns its id."""
    _git(folder, "init", "--quiet", "--initial-branch=main")
    identity = []
    for key, fallback in zip(("user.name", "user.email"), GIT_IDENTITY):
        configured = subprocess.run(["git", "-C", str(folder), "config", key], capture_output=True, text=True)
        if not configured.stdout.strip():
            identity += ["-c", f"{key}={fallback}"]
    _git(folder, "add", "--all")
    _git(folder, *identity, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m", message)
    return _git(folder, "rev-parse", "HEAD")


# -------------------------------------------------------------------------------------- stages
def publish(folder: Path, *, bundle: bool = False, key_variable: str = KEY_ENV, root: Path = ROOT) -> Published:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UnusableInput(f"{folder} exists and is not an empty folder")
    key = passphrase(key_variable) if bundle else None
    files = collect(root)
    leaks = implemented(files)
    if leaks:
        raise UnusableInput("refusing to publish an implemented graded function: " + "; ".join(leaks[:5]))
    names = notebooks(root)
    files["README.md"] = readme(names).encode()
    files["Makefile"] = MAKEFILE.encode()
    files[".gitignore"] = GITIGNORE.encode()
    folder.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if key is not None:
        encrypt(bundle_archive(root), key, folder / BUNDLE)
    assignments = sorted({n.split("/")[1] for n in names})
    message = (f"Course release: {len(assignments)} assignments ({', '.join(assignments)})"
               + ("; hidden suites encrypted in " + BUNDLE if key is not None else ""))
    return Published(folder, commit(folder, message), names, len(files) + (key is not None), key is not None)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``publish`` subcommand, added to the command line's subparsers."""
    parser = commands.add_parser(
        "publish", help="build the students' repository (no solution, reference or hidden test; one commit)",
        description="Build the repository students get from this (private) course repository: the released "
        "notebooks, the public checks, a students' README and Makefile, the pull-request workflow, in one fresh "
        "commit. With --bundle, the hidden suites and the reference are added encrypted for the workflow "
        f"({BUNDLE}), with the passphrase read from ${KEY_ENV}. Exit status: 0 published, 2 refused.")
    parser.add_argument("folder", type=Path, metavar="DIR", help="where to create the repository (new or empty)")
    parser.add_argument("--bundle", action="store_true",
                        help=f"add the hidden suites and the reference, encrypted with ${KEY_ENV} (docs/ci.md)")
    parser.add_argument("--key-env", default=KEY_ENV, metavar="NAME",
                        help=f"the environment variable holding the passphrase (default: {KEY_ENV})")
    parser.set_defaults(run=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    done = publish(args.folder, bundle=args.bundle, key_variable=args.key_env)
    lines = [f"published {len(done.notebooks)} notebooks to {done.folder} ({done.files} files, one commit "
             f"{done.commit[:12]} on main)"]
    if done.bundle:
        lines.append(f"hidden suites and reference: encrypted in {BUNDLE}; give the grading environment the "
                     f"{KEY_ENV} secret (docs/ci.md)")
    else:
        lines.append("hidden suites: not included; give the workflow HIDDEN_SUITES_REPO and HIDDEN_SUITES_TOKEN, "
                     "or publish again with --bundle (docs/ci.md)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
