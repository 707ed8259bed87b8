"""Grader failures are never scores, and gradings on one machine cannot hurt each other.

Through the real sandbox (bubblewrap), as the grader runs in production:

- a course checked out under /tmp grades officially (the sandbox's private /tmp hid its Python);
- every grading holds a sandbox slot (a uid, cgroups) of its own, so four gradings at once, one of
  them a process-and-thread bomb, leave the honest students their full marks, or at worst a grader
  error (exit 1, "not your fault"), never an official lower score;
- a worker that cannot start (the machine out of processes), a missing or damaged hidden suite:
  a grader error, never an official 0;
- time limits judge the CPU time the code used; a call that only sleeps hits the wall-clock
  backstop; a call slowed by the machine's load is the machine's fault.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.course import registry
from autograder.frontends import cli
from autograder.grading import engine, runner
from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox import session as client
from autograder import errors
from autograder.errors import GraderError

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "solutions" / "01_linear_models" / "linear_models.ipynb"

needs_sandbox = pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                   reason=f"sandbox: {sandbox.unavailable_reason()}")


def _grade_cli(notebook: Path, *extra: str, cwd: Path = ROOT, python: str = sys.executable,
               timeout: float = 600) -> subprocess.Popen:
    return subprocess.Popen([python, "-m", "autograder", "grade", str(notebook), "--format", "json", *extra],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------- slots (uids)
def test_each_grading_leases_its_own_slot_until_it_ends():
    first = sandbox.lease_slot()
    second = sandbox.lease_slot()
    try:
        assert first.slot != second.slot
        held = first.slot
        first.release()
        third = sandbox.lease_slot()
        assert third.slot == held  # free again once released
        third.release()
    finally:
        first.release()
        second.release()
    # A process that dies holding a slot frees it: the kernel drops its lock.
    code = ("from autograder.sandbox import bubblewrap as sandbox; import os; l = sandbox.lease_slot(); print(l.slot, flush=True); "
            "os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    lease = sandbox.lease_slot(int(done.stdout.split()[0]))
    try:
        assert lease.slot == int(done.stdout.split()[0])
    finally:
        lease.release()


@pytest.mark.skipif(os.geteuid() != 0, reason="separate uids per slot need root")
def test_slots_run_as_different_uids_in_their_own_cgroups():
    commands = [" ".join(sandbox.sandboxed_command(sandbox.SandboxSpec(slot=n))) for n in (3, 4)]
    assert f"--reuid={sandbox.BASE_UID + 3}" in commands[0] and f"--reuid={sandbox.BASE_UID + 4}" in commands[1]
    groups = sandbox.slot_cgroups(3)
    assert all(g.endswith("autograder-slot-3") for g in groups)
    assert all(g in commands[0] for g in groups)


# ----------------------------------------------------------------------- checkout under /tmp
@pytest.mark.slow
@needs_sandbox
def test_course_checked_out_under_tmp_grades_officially():
    """A copy of the course with its own virtual environment, both under /tmp (the environment's
    packages come from this one through a .pth file, as an editable or layered install would)."""
    folder = Path(__import__("tempfile").mkdtemp(prefix="course-", dir="/tmp"))
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                                capture_output=True, check=True).stdout.decode().split("\0")
        for name in filter(None, listed):
            if (ROOT / name).is_file():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, folder / name)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(folder / ".venv")], check=True, timeout=120)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
        (folder / ".venv" / "lib" / version / "site-packages" / "course.pth").write_text(f"{site.resolve()}\n")
        python = str(folder / ".venv" / "bin" / "python")
        proc = _grade_cli(Path("solutions/01_linear_models/linear_models.ipynb"), cwd=folder, python=python)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["official"] is True
        assert result["score"] == result["max_score"] == 20, result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------- concurrent gradings
# As many threads as the sandbox allows (they hold every task it may have), and as many processes,
# which spin for half a minute: the machine is loaded while the honest gradings run.
BOMB = """
import os, threading, time

_threads = 0
try:
    for _ in range(10_000):
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        _threads += 1
except RuntimeError:
    pass
try:
    for _ in range(10_000):
        if os.fork() == 0:
            _end = time.monotonic() + 30
            while time.monotonic() < _end:
                pass
            os._exit(0)
except OSError:
    pass
"""


def _bomb_notebook(path: Path) -> Path:
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(BOMB))
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
@needs_sandbox
def test_four_gradings_at_once_with_a_bomb_never_cost_honest_students_points(tmp_path: Path):
    honest = [ROOT / "solutions" / a / registry.assignments()[a][0].notebook
              for a in ("01_linear_models", "03_cnn", "07_rl")]
    bomb = _bomb_notebook(tmp_path / "linear_models.ipynb")
    started = time.monotonic()
    procs = [_grade_cli(p) for p in honest] + [_grade_cli(bomb)]
    outcomes, seconds = [], []
    for proc in procs:
        outcomes.append(proc.communicate(timeout=900))
        seconds.append(round(time.monotonic() - started))
    for path, proc, (out, err) in zip(honest, procs, outcomes):
        if proc.returncode == 1:  # a grader error is allowed, but must say so
            assert "not your fault" in err, err
            continue
        assert proc.returncode == 0, err
        result = json.loads(out)
        assert result["official"] and result["score"] == result["max_score"], (path.name, result)
    assert procs[-1].returncode in (0, 1), outcomes[-1][1]
    print(f"four concurrent gradings with a bomb: done after {seconds} s, exits {[p.returncode for p in procs]}, "
          f"scores {[json.loads(o).get('score') if o else None for o, _ in outcomes]}")


# --------------------------------------------------------------------- grader failures
@pytest.mark.slow
def test_worker_that_cannot_start_is_a_grader_error_not_a_crash(monkeypatch):
    """A process limit of 1 leaves bubblewrap unable to fork (Resource temporarily unavailable),
    as on a machine out of processes: retried, then a grader error."""
    if sandbox.unavailable_reason() is not None:
        pytest.skip(f"sandbox: {sandbox.unavailable_reason()}")
    monkeypatch.setattr(client.StudentSession, "START_BACKOFF_S", 0.05)
    limits = sandbox.Limits(processes=1)
    with sandbox.lease_slot() as lease:
        session = client.StudentSession([client.Cell("x = 1", "cell [1]")], slot=lease.slot, limits=limits)
        with pytest.raises(GraderError, match="could not start after 4 attempts") as info:
            session.start()
        session.close()
    assert "Resource temporarily unavailable" in info.value.message or "exited" in info.value.message


def _suites_without(tmp_path: Path, name: str, replacement: str | None) -> Path:
    copy = tmp_path / "suites"
    shutil.copytree(runner.SUITES, copy)
    target = copy / f"test_{name}.py"
    if replacement is None:
        target.unlink()
    else:
        target.write_text(replacement)
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("replacement, words", [
    (None, "is missing"),
    ("def broken(:\n", "is damaged"),
    ("raise ImportError('no reference')\n", "did not run"),
])
def test_missing_or_damaged_suite_refuses_with_exit_1(tmp_path, monkeypatch, capsys, replacement, words):
    monkeypatch.setattr(runner, "SUITES", _suites_without(tmp_path, "softmax", replacement))
    status = cli.main(["grade", str(SOLUTION), "--no-sandbox"])
    err = capsys.readouterr().err
    assert status == errors.EXIT_INTERNAL
    assert words in err and "not your fault" in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------ time limits
SPIN = "def softmax(X):\n    while True:\n        pass\n"
SLEEP = "def softmax(X):\n    import time\n    time.sleep(3600)\n"


@pytest.mark.slow
@pytest.mark.parametrize("code, factor, words", [(SPIN, 60, "of CPU time"), (SLEEP, 1, "waited or slept")])
def test_time_limits_judge_cpu_time_with_a_wall_clock_backstop(monkeypatch, code, factor, words):
    """A loop is stopped when it has used its CPU time (on a loaded machine that takes longer than
    the limit in wall-clock time); a sleep, which uses none, by the wall-clock backstop."""
    import torch

    monkeypatch.setattr(client.WorkerProcess, "WALL_FACTOR", factor)
    monkeypatch.setattr(client.WorkerProcess, "WALL_EXTRA_S", 2.0)
    with client.StudentSession([client.Cell(code, "cell [1]")], sandboxed=False, call_timeout=1.0) as session:
        with pytest.raises(client.StudentError) as info:
            session.vjp("softmax", {"X": torch.ones(2, 2)})
    assert info.value.kind == "timeout" and words in info.value.message, info.value.message


def test_starved_or_self_inflicted():
    assert client.machine_starved(cpu=0.5, waited=30, wall=31)  # one task, held back by others
    assert not client.machine_starved(cpu=0.5, waited=0.2, wall=31)  # slept
    assert not client.machine_starved(cpu=3, waited=200, wall=31)  # eight threads of its own


@pytest.mark.slow
def test_a_call_starved_by_the_machine_is_retried_then_a_grader_error(monkeypatch):
    """A worker that is runnable but gets no CPU (here: a cgroup-free stand-in, a worker whose
    measured usage shows only waiting) is not judged: retried once, then a grader error."""
    import torch

    monkeypatch.setattr(client.WorkerProcess, "WALL_FACTOR", 1)
    monkeypatch.setattr(client.WorkerProcess, "STARVED_FACTOR", 2)
    monkeypatch.setattr(client.WorkerProcess, "WALL_EXTRA_S", 1.0)
    born: dict[int, float] = {}

    def starved(self):  # no CPU used, all the time since the worker started spent waiting for one
        elapsed = time.monotonic() - born.setdefault(id(self), time.monotonic())
        return 0.1, elapsed

    code = "def softmax(X):\n    import time\n    time.sleep(3600)\n"
    monkeypatch.setattr(client.WorkerProcess, "usage", starved)
    with client.StudentSession([client.Cell(code, "cell [1]")], sandboxed=False, call_timeout=1.0) as session:
        session.start()
        with pytest.raises(GraderError, match="machine's load"):
            session.vjp("softmax", {"X": torch.ones(2, 2)})



@pytest.mark.slow
def test_a_busy_loop_starved_by_the_machine_is_still_the_students_timeout(monkeypatch):
    """Past the wall-clock backstop, a call that is runnable but held back by other load keeps
    running while it still gets some CPU: a loop that reaches its CPU-time limit is the student's
    timeout, not the machine's fault (a stand-in usage: a third of a CPU, the rest spent waiting)."""
    import torch

    monkeypatch.setattr(client.WorkerProcess, "WALL_FACTOR", 1)
    monkeypatch.setattr(client.WorkerProcess, "WALL_EXTRA_S", 0.5)
    born: dict[int, float] = {}

    def a_third_of_a_cpu(self):
        elapsed = time.monotonic() - born.setdefault(id(self), time.monotonic())
        return elapsed / 3, 2 * elapsed / 3

    monkeypatch.setattr(client.WorkerProcess, "usage", a_third_of_a_cpu)
    with client.StudentSession([client.Cell(SPIN, "cell [1]")], sandboxed=False, call_timeout=1.0) as session:
        session.start()
        with pytest.raises(client.StudentError) as info:
            session.vjp("softmax", {"X": torch.ones(2, 2)})
    assert info.value.kind == "timeout" and "of CPU time" in info.value.message, info.value.message

# ------------------------------------------------------------------------ reproducible grades
def test_seed_depends_on_graded_content_and_the_secret(monkeypatch):
    from autograder.grading import seeds

    monkeypatch.setenv(seeds.SECRET_ENV, "course-secret-one")
    first = seeds.derive_seed("01_linear_models", ["import torch", "def softmax(X): ..."])
    assert first == seeds.derive_seed("01_linear_models", ["import torch", "def softmax(X): ..."])
    assert first != seeds.derive_seed("01_linear_models", ["import torch", "def softmax(X): ...  "])
    assert first != seeds.derive_seed("02_mlp", ["import torch", "def softmax(X): ..."])
    assert first != seeds.derive_seed("01_linear_models", ["import torchdef softmax(X): ..."])  # cells stay apart
    monkeypatch.setenv(seeds.SECRET_ENV, "course-secret-two")
    assert first != seeds.derive_seed("01_linear_models", ["import torch", "def softmax(X): ..."])
    assert 0 <= first < 2 ** seeds.SEED_BITS


def test_course_secret_is_created_once_private_and_ignored_by_git(tmp_path, monkeypatch):
    from autograder.grading import seeds

    monkeypatch.delenv(seeds.SECRET_ENV, raising=False)
    monkeypatch.setattr(seeds, "SECRET_FILE", tmp_path / ".autograder-secret")
    secret = seeds.course_secret()
    assert len(secret) == 64 and seeds.course_secret() == secret
    assert (tmp_path / ".autograder-secret").stat().st_mode & 0o077 == 0
    ignored = subprocess.run(["git", "check-ignore", "-q", ".autograder-secret"], cwd=ROOT)
    assert ignored.returncode == 0


@pytest.mark.slow
@needs_sandbox
def test_regrading_without_a_seed_gives_identical_results():
    """A mistake whose error sits near the tolerance (eps inside the square root) once scored
    5, 5, 3 on three runs; now every run draws the same inputs."""
    notebook = ROOT / "examples" / "submissions" / "hana_eps_inside_sqrt" / "optimization.ipynb"
    runs = [engine.grade_notebook(notebook).to_json() for _ in range(3)]
    for run in runs:
        run.pop("seconds", None)
    assert runs[0] == runs[1] == runs[2]
    assert runs[0]["seed"] is not None and runs[0]["fingerprint"] and runs[0]["device"] == "cpu"
    scores = [r["score"] for r in runs]
    print(f"three gradings without --seed: scores {scores}, seed {runs[0]['seed']}")
