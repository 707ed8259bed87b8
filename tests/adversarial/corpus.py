"""The adversarial corpus as data: attack sources, the notebooks built from them, the expected
outcomes, and a runner that grades a batch of notebooks the way the course does.

Each attack is ``attacks/<name>.py``: the cells a hostile student would put in their notebook, in
the "percent" format. ``# %% <grade_id>`` replaces the source of that cell of the release
notebook (``# %% softmax`` is the student's softmax cell); ``# %% new`` inserts a new, untagged
code cell after the previous one. Text before the first marker describes the attack. A few
placeholders are filled in when the notebook is built (``__LISTENER_PORT__``).

Notebooks are built from the release notebook (``assignments/<id>/<nb>``, or the instructor's
``solutions/`` copy where the release has not been generated), every solution cell first filled
with the instructor's correct code, so that the exercises the attack leaves alone must keep full
marks. ``EXPECTED`` says, for every attack, what grading must make of it.

The runner grades queues of notebooks in separate processes, one per sandbox slot (one uid per
slot), recording the result, every report format, the grader's own output (its "log"), the wall
time and any process of the slot's uid still alive afterwards.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import os
import re
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = Path(__file__).resolve().parent / "attacks"
CANARY_VARIABLE = "AUTOGRADER_CANARY"
#: Files planted outside the sandbox (in the test's temporary folder) that no attack may read.
PLANTED_NAMES = ("gradebook.db", "other_student_submission.ipynb")
#: Sandbox slots (one uid each when the grader is root) per grading mode.
SLOTS_PER_MODE = 3
#: Where the corpus takes its slots: far from slot 0 (other test modules) and 60-63 (tests/frontends/test_batch.py).
SLOT_RANGE = [*range(40, 60), *range(64, 100)]

Notebook = dict[str, Any]


# ------------------------------------------------------------------------------- expectations
@dataclass(frozen=True)
class Expect:
    """What grading must make of one attack.

    ``outcome``:
      ``"nothing"``   — the attacked exercise earns no more than an honest wrong answer (the
                        ``baseline_wrong_answer`` entry, itself expected to earn 0) and does not pass;
      ``"forbidden"`` — the attacked exercise is reported ``forbidden`` and scores 0;
      ``"fails"``     — the tests in ``failing`` fail (an attack on one property only).
    ``evidence``: strings the reports must contain (proof that the attack ran, and what it saw).
    ``notebook_error``: a notebook-level error must be reported (a cell skipped, a load failure).
    ``tamper``: edits the notebook JSON after the cells are placed (metadata, cell types, ...).
    """

    target: str
    outcome: str = "nothing"
    assignment: str = "01_linear_models"
    failing: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    notebook_error: bool = False
    tamper: Callable[[Notebook], None] | None = None
    host_paths_absent: tuple[str, ...] = ()  # relative to the notebook's folder, or absolute
    absent: tuple[str, ...] = ()  # strings no report and no grader output may contain (leaks)
    note: str = ""


def _cells_with(nb: Notebook, grade_id: str) -> list[dict]:
    return [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]


def tamper_test_cell(nb: Notebook) -> None:
    """Rewrite the locked hidden-test cell: claim 1000 points and make its code print a pass."""
    for cell in _cells_with(nb, "test_softmax"):
        cell["source"] = "print('test_softmax: 10/10 passed')\nsoftmax = lambda X: X\n"
        cell["metadata"]["nbgrader"].update(points=1000, locked=False, solution=True)


def delete_test_cells(nb: Notebook) -> None:
    """Delete the public check and the hidden-test cells of softmax."""
    nb["cells"] = [c for c in nb["cells"]
                   if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in ("test_softmax", "check_softmax")]


def retag_cells(nb: Notebook) -> None:
    """Move the solution into a cell tagged as a trusted set-up cell, give the test cell another
    exercise's grade id and more points, and mark the solution cell read-only and graded."""
    (cell,) = _cells_with(nb, "softmax")
    cell["metadata"]["nbgrader"].update(grade_id="provided_softmax", locked=True, solution=False, grade=True, points=50)
    for test in _cells_with(nb, "test_softmax"):
        test["metadata"]["nbgrader"].update(grade_id="test_cross_entropy", points=500)


def duplicate_cells(nb: Notebook) -> None:
    """Duplicate the hidden-test cell (twice the points?) and the set-up cell (with changed code)."""
    (test,) = _cells_with(nb, "test_softmax")
    (setup,) = _cells_with(nb, "setup")
    index = nb["cells"].index(test)
    copies = [copy.deepcopy(test), copy.deepcopy(test)]
    for number, cell in enumerate(copies):
        cell["id"] = f"test-softmax-copy-{number}"
    nb["cells"][index + 1:index + 1] = copies
    forged = copy.deepcopy(setup)
    forged["id"] = "setup-copy"
    forged["source"] = "import torch\ntorch.testing.assert_close = lambda *a, **k: None\nsoftmax = lambda X: X\n"
    nb["cells"].insert(nb["cells"].index(setup) + 1, forged)


def change_cell_types(nb: Notebook) -> None:
    """Turn the solution cell into a markdown cell and a raw cell (code that must never run)."""
    (cell,) = _cells_with(nb, "softmax")
    raw = copy.deepcopy(cell)
    cell["cell_type"] = "markdown"
    cell.pop("outputs", None)
    cell.pop("execution_count", None)
    raw["cell_type"] = "raw"
    raw.pop("outputs", None)
    raw.pop("execution_count", None)
    raw["metadata"]["nbgrader"]["grade_id"] = "softmax_raw"
    raw["id"] = "softmax-raw"
    nb["cells"].insert(nb["cells"].index(cell) + 1, raw)


# The table of expected outcomes (one entry per file in attacks/).
EXPECTED: dict[str, Expect] = {
    # --- the baseline: an honest wrong answer, without any trick -----------------------------
    "baseline_wrong_answer": Expect("softmax", note="a do-nothing softmax; every attack is measured against it"),
    # --- forging the verdict --------------------------------------------------------------------
    "forge_assert_close": Expect("softmax"),
    "forge_pytest_internals": Expect("softmax"),
    "pytest_skip_in_function": Expect("softmax", evidence=("Skip",)),
    "pytest_skip_top_level": Expect("softmax", notebook_error=True, evidence=("Skipped",)),
    "sys_exit_in_function": Expect("softmax", evidence=("SystemExit",)),
    "os_exit_in_function": Expect("softmax", evidence=("exited with status 0",)),
    "exit_at_top_level": Expect("softmax", notebook_error=True, evidence=("SystemExit", "was skipped")),
    "fake_results_on_stdout": Expect("softmax"),
    "forged_reply_frames": Expect("softmax", evidence=("malformed",)),
    "write_results_files": Expect("softmax", evidence=("RuntimeError",),
                                  host_paths_absent=("results.json", "../results.json", "/autograder/results/results.json")),
    # --- lying outputs --------------------------------------------------------------------------
    "tensor_subclass_torch_function": Expect("softmax", evidence=("subclass of torch.Tensor",)),
    "eq_always_true": Expect("softmax", evidence=("does not accept",)),
    "nan_and_inf": Expect("softmax"),
    "broadcastable_scalar": Expect("softmax", evidence=("expected (6, 9)",)),
    "wrong_dtype_and_device": Expect("softmax", evidence=("dtype float16", "on device meta")),
    "unpickling_payload": Expect("softmax", evidence=("does not accept",), host_paths_absent=("/tmp/unpickled_by_grader",)),
    "oversized_reply": Expect("softmax", evidence=("too large to send back",)),
    "sparse_output": Expect("cross_entropy", "fails", failing=("test_device", "test_no_mutation"),
                            evidence=("a sparse or nested tensor",)),
    "zero_stride_reply": Expect("softmax", evidence=("too large to send back",)),
    "forged_device_names": Expect("softmax"),
    "malformed_reply_frames": Expect("clip_grad", assignment="04_rnn", evidence=("malformed",)),
    "malformed_harness_reply": Expect("lstm_cell", assignment="10_gated_rnn", evidence=("malformed",)),
    "parse_bomb": Expect("softmax", notebook_error=True, evidence=("nested more than",)),
    # --- reading secrets ------------------------------------------------------------------------
    "walk_filesystem": Expect("softmax", notebook_error=True, evidence=("LOOT: nothing found",)),
    "environment_and_proc": Expect("softmax", notebook_error=True, evidence=("LOOT: nothing found",)),
    "import_internals": Expect("softmax", notebook_error=True, evidence=("LOOT: nothing found",)),
    # --- escaping or harming --------------------------------------------------------------------
    "network": Expect("softmax", notebook_error=True, evidence=("NET: all blocked",)),
    "write_outside_sandbox": Expect("softmax", notebook_error=True, evidence=("WROTE: nothing; TMP: capped",),
                                    host_paths_absent=("pwned_by_student.txt",)),
    "kill_parent_and_everyone": Expect("softmax"),
    "fork_flood": Expect("softmax", evidence=("RuntimeError",)),
    "memory_bomb": Expect("softmax", evidence=("RuntimeError",)),
    "cpu_loop": Expect("softmax", evidence=("s of CPU time and was stopped",)),
    "ignore_signals_and_sleep": Expect("softmax", evidence=("did not finish within",)),
    "sleep_at_load": Expect("softmax", notebook_error=True, evidence=("did not finish within",)),
    "output_flood": Expect("softmax"),
    "read_stdin": Expect("softmax", evidence=("RuntimeError",)),
    "background_processes": Expect("softmax", notebook_error=True, evidence=("DAEMON: started",)),
    "forbidden_syscalls": Expect("softmax", notebook_error=True, evidence=("ESCAPE: all denied",)),
    "slot_state_left_behind": Expect("softmax", notebook_error=True, evidence=("LEFT: blocked shm,mqueue,bind,xattr",)),
    "lower_pid1_limits": Expect("softmax", notebook_error=True, evidence=("PID1: all denied",)),
    # --- hidden inputs leaking out ------------------------------------------------------------
    "hidden_input_leak": Expect("softmax", absent=("HIDDENLEAK",)),
    "hidden_input_leak_module_names": Expect("replace_classifier", assignment="11_transfer_learning",
                                             evidence=("raised ValueError", "that the original model does not have",
                                                       "not torch.nn's"), absent=("HIDDENLEAK",)),
    "hidden_input_leak_gradient_note": Expect("gru_cell", "fails", assignment="10_gated_rnn",
                                              failing=("test_gradients", "test_sequence_bptt"),
                                              evidence=("gradients could not be computed",), absent=("HIDDENLEAK",)),
    # --- tampering with the notebook ------------------------------------------------------------
    "edited_test_cell": Expect("softmax", tamper=tamper_test_cell),
    "deleted_test_cells": Expect("softmax", tamper=delete_test_cells),
    "changed_grade_ids_and_points": Expect("softmax", tamper=retag_cells, evidence=("is not defined",)),
    "duplicated_cells": Expect("softmax", tamper=duplicate_cells),
    "changed_cell_types": Expect("softmax", tamper=change_cell_types, evidence=("is not defined",)),
    # --- forbidden-call policy ------------------------------------------------------------------
    "forbidden_alias": Expect("softmax", "forbidden"),
    "forbidden_getattr": Expect("softmax", "forbidden"),
    "forbidden_importlib": Expect("softmax", "forbidden"),
    "forbidden_aten": Expect("softmax", "forbidden"),
    "forbidden_recorders_disabled": Expect("softmax", "forbidden"),
    "forbidden_evasion_in_process": Expect("softmax", "forbidden"),
    "forbidden_runpy_copy": Expect("clip_grad", "forbidden", assignment="04_rnn"),
    "reseed_rng_in_dropout": Expect("dropout", "fails", assignment="02_mlp", failing=("test_fresh_masks",)),
    "hard_coded_public_cases": Expect("softmax"),
}


# ------------------------------------------------------------------------------------- attacks
@dataclass
class Attack:
    name: str
    description: str
    cells: list[tuple[str, str]]  # (target grade_id or "new", source)


_MARKER = re.compile(r"^# %%[ \t]*(\S*)[ \t]*$")


def load_attack(name: str) -> Attack:
    text = (ATTACKS / f"{name}.py").read_text(encoding="utf-8")
    header: list[str] = []
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        match = _MARKER.match(line.rstrip("\n"))
        if match:
            cells.append((match.group(1) or "new", []))
        elif cells:
            cells[-1][1].append(line)
        else:
            header.append(line)
    description = " ".join(line.lstrip("#").strip() for line in header if line.strip())
    return Attack(name, description, [(target, "".join(lines).strip("\n") + "\n") for target, lines in cells])


def attack_names() -> list[str]:
    return sorted(p.stem for p in ATTACKS.glob("*.py") if not p.name.startswith("_"))


# ------------------------------------------------------------------------------------ notebooks
def _registry():
    from autograder.course import registry

    return registry


def release_notebook(assignment: str) -> Path:
    """The notebook a student starts from (the instructor's copy until releases are generated)."""
    notebook = _registry().assignments()[assignment][0].notebook
    for folder in ("assignments", "solutions"):
        path = ROOT / folder / assignment / notebook
        if path.is_file():
            return path
    raise FileNotFoundError(f"no notebook for {assignment}")


def _grade_id(cell: dict) -> str:
    return str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", ""))


def correct_sources(assignment: str) -> dict[str, str]:
    """grade_id -> the instructor's correct code, for every solution cell of the assignment."""
    notebook = _registry().assignments()[assignment][0].notebook
    nb = json.loads((ROOT / "solutions" / assignment / notebook).read_text(encoding="utf-8"))
    out = {}
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            source = cell["source"]
            out[_grade_id(cell)] = "".join(source) if isinstance(source, list) else source
    return out


def _code_cell(source: str, metadata: dict | None = None) -> dict:
    import secrets

    return {"cell_type": "code", "execution_count": None, "id": secrets.token_hex(4), "metadata": metadata or {},
            "outputs": [], "source": source}


def correct_notebook(assignment: str) -> Notebook:
    """The release notebook with every solution cell holding correct code."""
    nb = json.loads(release_notebook(assignment).read_text(encoding="utf-8"))
    solutions = correct_sources(assignment)
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code" and _grade_id(cell) in solutions:
            cell["source"] = solutions[_grade_id(cell)]
            cell["outputs"] = []
    return nb


def build(name: str, expect: Expect, placeholders: dict[str, str]) -> Notebook:
    attack = load_attack(name)
    nb = correct_notebook(expect.assignment)
    position = None
    for target, source in attack.cells:
        for key, value in placeholders.items():
            source = source.replace(key, value)
        if target == "new":
            if position is None:
                position = nb["cells"].index(next(c for c in nb["cells"] if _grade_id(c) == "setup"))
            position += 1
            nb["cells"].insert(position, _code_cell(source))
            continue
        matches = [c for c in nb["cells"] if _grade_id(c) == target]
        if len(matches) != 1:
            raise ValueError(f"{name}: no single cell with grade_id {target!r}")
        matches[0]["source"] = source
        position = nb["cells"].index(matches[0])
    if expect.tamper is not None:
        expect.tamper(nb)
    return nb


def write_notebook(nb: Notebook, folder: Path, assignment: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _registry().assignments()[assignment][0].notebook
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


# -------------------------------------------------------------------------------------- secrets
def _code_lines(path: Path) -> set[str]:
    """Lines of a Python file holding code but no string literal or comment (so no feedback text
    meant for students), long enough to be distinctive."""
    source = path.read_text(encoding="utf-8")
    text_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.STRING, tokenize.COMMENT) or token.type == getattr(tokenize, "FSTRING_START", -1):
            text_lines.update(range(token.start[0], token.end[0] + 1))
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docstrings.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    out = set()
    for number, line in enumerate(source.splitlines(), start=1):
        line = line.strip()
        if number in text_lines or number in docstrings or len(line) < 30:
            continue
        if line.startswith(("import ", "from ", "@")):
            continue
        out.add(line)
    return out


def secret_lines() -> dict[str, set[str]]:
    """Distinctive code lines of the reference and of the hidden suites, minus any line that also
    occurs in what students see (the notebooks) or in the attacks themselves."""
    public = "\n".join(p.read_text(encoding="utf-8") for p in [*ROOT.glob("solutions/*/*.ipynb"), *ATTACKS.glob("*.py")])
    out = {}
    for label, pattern in (("reference", "reference/*.py"), ("hidden suite", "autograder/suites/*.py")):
        lines = set()
        for path in ROOT.glob(pattern):
            lines |= {line for line in _code_lines(path) if line not in public}
        out[label] = lines
    return out


# --------------------------------------------------------------------------------------- runner
class SlotReservation:
    """Slots locked for this run (``flock`` on a file per slot), so that two runs of the corpus on
    one machine (two developers, ``make test`` beside a single test) never share a slot's uid."""

    def __init__(self, count: int) -> None:
        import fcntl
        import tempfile

        folder = Path(tempfile.gettempdir()) / "autograder-corpus-slots"
        folder.mkdir(exist_ok=True)
        self.slots: list[int] = []
        self._fds: list[int] = []
        for slot in SLOT_RANGE:
            if len(self.slots) == count:
                break
            fd = os.open(folder / f"{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.slots.append(slot)
            self._fds.append(fd)
        if len(self.slots) < count:
            self.release()
            raise RuntimeError("no free sandbox slots for the corpus (other runs hold them)")

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


@dataclass
class Job:
    name: str
    path: str


@dataclass
class Graded:
    name: str
    slot: int
    result: dict[str, Any] | None = None
    reports: dict[str, str] = field(default_factory=dict)
    log: str = ""
    exception: str = ""
    seconds: float = 0.0
    leftover: list[str] = field(default_factory=list)
    seed: int = 0


def _processes_of(uid: int) -> list[str]:
    """``"pid (state, parent ppid): command line"`` of every process whose real uid is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            stat = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace")
        except (OSError, IndexError):
            continue
        uids = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if uids and int(uids.group(1)) == uid:
            found.append(f"{entry} ({stat[0].decode()}, parent {stat[1].decode()}): {cmdline}")
    return found


def leftover_processes(slot: int, wait: float = 10.0, allowed: tuple[str, ...] = ()) -> list[str]:
    """Processes of the slot's uid still alive ``wait`` seconds after grading (root only), but
    those whose command line contains one of ``allowed`` (the batch grader's zygote)."""
    from autograder.sandbox import bubblewrap as sandbox

    if os.geteuid() != 0:
        return []
    deadline = time.monotonic() + wait
    while True:
        found = [p for p in _processes_of(sandbox.BASE_UID + slot) if not any(a in p for a in allowed)]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


class _ColdGrader:
    """``grade_notebook`` as the command line runs it: a fresh sandbox per submission."""

    zygote: tuple[str, ...] = ()

    def __init__(self, slot: int) -> None:
        self.slot = slot

    def grade(self, path: str, seed: int):
        from autograder.grading.engine import grade_notebook

        return grade_notebook(path, slot=self.slot, seed=seed)

    def close(self) -> None:
        pass


class _BatchGrader:
    """The class-batch grader: one warm sandbox (a zygote) per slot, reused by every submission."""

    zygote = ("worker.zygote", "bwrap --as-pid-1")  # the warm sandbox itself, kept between submissions

    def __init__(self, slot: int) -> None:
        from autograder.frontends.batch.grader import SlotGrader

        self.grader = SlotGrader(slot)

    def grade(self, path: str, seed: int):
        out = self.grader.grade({"key": path, "name": Path(path).name, "path": path, "assignment": None,
                                 "seed": seed, "device": "cpu"})
        if out.status != "graded" or out.result is None:
            raise RuntimeError(f"{out.status}: {out.message}")
        return out.result

    def close(self) -> None:
        self.grader.close()


GRADERS = {"cold": _ColdGrader, "batch": _BatchGrader}


def grade_queue(slot: int, jobs: list[Job], canary: str, mode: str = "cold") -> list[Graded]:
    """Grade ``jobs`` one after the other on one sandbox slot (run in a process of its own)."""
    import secrets
    import tempfile

    os.environ[CANARY_VARIABLE] = canary
    from autograder.report import render

    out = []
    grader = GRADERS[mode](slot)
    try:
        for job in jobs:
            graded = Graded(job.name, slot, seed=secrets.randbits(62))
            with tempfile.TemporaryFile() as log:
                saved = os.dup(1), os.dup(2)
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                started = time.monotonic()
                try:
                    result = grader.grade(job.path, graded.seed)
                    graded.result = result.to_json()
                    graded.reports = {fmt: render(result, fmt) for fmt in ("text", "json", "markdown", "gradescope", "junit")}
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    graded.exception = f"{type(exc).__name__}: {exc}"
                finally:
                    graded.seconds = time.monotonic() - started
                    os.dup2(saved[0], 1)
                    os.dup2(saved[1], 2)
                    os.close(saved[0])
                    os.close(saved[1])
                log.seek(0)
                graded.log = log.read(1 << 20).decode(errors="replace")
            graded.leftover = leftover_processes(slot, allowed=grader.zygote)
            out.append(graded)
    finally:
        grader.close()
    if out:  # once the slot is closed, nothing at all may remain of it
        out[-1].leftover += leftover_processes(slot)
    return out
