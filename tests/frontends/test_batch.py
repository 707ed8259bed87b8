"""Class-scale grading (``python -m autograder grade-batch``): same verdicts as grading one by one,
resumable, isolation between submissions that share a warm sandbox, Ray, reports and gradebook.

The sandboxed tests use slots 60-63 (uids 61060-61063 as root), apart from the other test modules'.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from autograder.course import registry  # noqa: E402
from autograder.sandbox import bubblewrap as sandbox
from autograder.report import class_report  # noqa: E402
from autograder.frontends.batch import discover
from autograder.report import class_outputs as outputs
from autograder.report.records import BatchRecord
from bench import submissions as make  # noqa: E402

SLOT = 60
SEED = 20240611


def _sandbox() -> None:
    reason = sandbox.unavailable_reason()
    if reason:
        pytest.skip(f"the sandbox cannot start here ({reason})")


def _batch(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "autograder", "grade-batch", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done


def _records(report: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((report / outputs.RECORDS).glob("*.json")):
        record = json.loads(path.read_text())
        out[record["key"]] = record
    return out


def _code_cell(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": os.urandom(4).hex(), "metadata": {}, "outputs": [],
            "source": source}


def _write(root: Path, student: str, nb: dict, assignment: str = "01_linear_models") -> Path:
    notebook = registry.assignments()[assignment][0].notebook
    path = root / "submitted" / student / assignment / notebook
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def _correct(assignment: str = "01_linear_models") -> dict:
    answers = {e.name: sorted(n for n in make.implementations(e.name) if n.startswith("correct_"))[0]
               for e in registry.assignments()[assignment]}
    return make.notebook_with(assignment, answers)


# ------------------------------------------------------------------------------ fast: no sandbox
def test_discover_reads_nbgrader_layout_and_plain_files(tmp_path: Path) -> None:
    course = tmp_path / "course"
    _write(course, "alice", _correct())
    _write(course, "bob", _correct(), "02_mlp")
    (course / "source" / "01_linear_models").mkdir(parents=True)
    (course / "source" / "01_linear_models" / "linear_models.ipynb").write_text("{}")  # not a submission
    checkpoint = course / "submitted" / "alice" / "01_linear_models" / ".ipynb_checkpoints" / "linear_models.ipynb"
    checkpoint.parent.mkdir()
    checkpoint.write_text("{}")
    loose = tmp_path / "loose" / "mine.ipynb"
    loose.parent.mkdir()
    loose.write_text("{}")
    found = discover.discover([course, loose.parent])
    assert [(s.key, s.student, s.assignment) for s in found] == [
        ("alice/01_linear_models/linear_models.ipynb", "alice", "01_linear_models"),
        ("bob/02_mlp/mlp.ipynb", "bob", "02_mlp"),
        ("mine.ipynb", None, None),
    ]
    names = {s.record_name for s in found}
    assert len(names) == 3 and all(re.fullmatch(r"[A-Za-z0-9._-]+\.json", n) for n in names)


def _record(key: str, assignment: str, exercises: list[tuple[str, float, str, list[tuple[str, bool, str]]]]) -> BatchRecord:
    result = {"notebook": "nb.ipynb", "assignment": assignment, "errors": [], "official": True,
              "exercises": [{"name": name, "score": score, "max_score": 10, "status": status, "message": "",
                             "tests": [{"name": t, "passed": ok, "points": 5 if ok else 0, "max_points": 5,
                                        "message": message} for t, ok, message in tests]}
                            for name, score, status, tests in exercises]}
    result["score"] = sum(e["score"] for e in result["exercises"])
    result["max_score"] = 10 * len(exercises)
    return BatchRecord.from_json({"key": key, "student": key.split("/")[0], "notebook": "nb.ipynb", "status": "graded",
                                  "result": result})


def test_class_report_plots_distributions_ranks_failures_and_escapes(tmp_path: Path) -> None:
    hostile = "<script>alert('pwned')</script> & \"quotes\""
    records = [
        _record("ann/a/nb.ipynb", "01_linear_models", [("softmax", 10, "passed", [("test_values", True, ""), ("test_gradient", True, "")])]),
        _record("bob/a/nb.ipynb", "01_linear_models", [("softmax", 5, "partial", [("test_values", True, ""), ("test_gradient", False, "gradient off by 0.5")])]),
        _record("cy/a/nb.ipynb", "01_linear_models", [("softmax", 5, "partial", [("test_values", True, ""), ("test_gradient", False, "gradient off by 0.25")])]),
        BatchRecord.from_json({"key": f"{hostile}/x.ipynb", "status": "unusable", "message": hostile, "result": None}),
    ]
    page = class_report.render(records)
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page  # the page's own script is its sorting
    assert page.count('src="data:image/png;base64,') == 2  # the total and softmax
    assert "test_gradient" in page and "2 / 3" in page  # failed twice out of three attempts
    assert "2× " in page  # the two messages differ only by numbers: folded into one
    assert "1 unusable" in page
    paths = outputs.write_tables(tmp_path, records)
    rows = list(csv.DictReader(open(paths[0])))
    assert [(r["key"], r["test"], r["passed"]) for r in rows][:2] == [("ann/a/nb.ipynb", "test_values", "True"),
                                                                     ("ann/a/nb.ipynb", "test_gradient", "True")]
    exercises = list(csv.DictReader(open(paths[1])))
    assert [(r["student"], r["exercise"], r["score"]) for r in exercises] == [("ann", "softmax", "10"), ("bob", "softmax", "5"),
                                                                             ("cy", "softmax", "5")]


def test_zygote_sandbox_is_the_cold_sandbox_as_pid_1_with_a_read_only_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from autograder.sandbox import forkserver

    def command(device: str) -> list[str]:
        args, fds = forkserver.Slot(7, device=device).command()
        for fd in fds:
            os.close(fd)
        return args

    zygote = command("cpu")
    cold = sandbox.launch(sandbox.SandboxSpec("cpu", 7))
    cold.close()
    python = zygote.index("-I")
    assert zygote[python + 1:] == ["-c", forkserver.ZYGOTE_CODE]
    assert zygote[zygote.index("--as-pid-1") - 1].endswith("bwrap")
    options = zygote[:python]
    remounted = [options[i + 1] for i, a in enumerate(options) if a == "--remount-ro"]
    assert "/" in remounted and "/dev" in remounted
    last_mount = max(i for i, a in enumerate(options) if a in ("--tmpfs", "--dev", "--proc", "--ro-bind"))
    assert all(i > last_mount for i, a in enumerate(options) if a == "--remount-ro")
    cold_options = cold.command[:cold.command.index("-I")]
    assert all(a in options for a in cold_options if not a.isdigit())  # every layer of the cold sandbox
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    gpu = command("cuda")
    position = len(gpu) - 1 - gpu[::-1].index("CUDA_VISIBLE_DEVICES")
    assert gpu[position - 1:position + 2] == ["--setenv", "CUDA_VISIBLE_DEVICES", "3"]


def test_ray_actors_ask_for_gpus_only_with_cuda() -> None:
    from autograder.frontends.batch import ray_executor

    assert ray_executor.actor_resources("cpu", 1.0) == {"num_cpus": 1}
    assert ray_executor.actor_resources("cuda", 0.5) == {"num_cpus": 1, "num_gpus": 0.5}


# --------------------------------------------------------------------------- slow: real sandboxes
@pytest.fixture(scope="module")
def mixed_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("class")
    make.make_class(root, n=len(make.gradable_assignments()) + 3, seed=5)
    return root


#: Exercises whose student code draws random numbers (from the worker's own generator, seeded
#: afresh in every worker, cold or forked): their messages quote counts that vary from run to run.
RANDOM_IN_STUDENT_CODE = {"dropout"}


def _deterministic(result: dict) -> dict:
    return {**result, "exercises": [e if e["name"] not in RANDOM_IN_STUDENT_CODE else
                                    {"name": e["name"], "status": e["status"], "score": e["score"]}
                                    for e in result["exercises"]]}


@pytest.mark.slow
def test_batch_gives_the_verdicts_of_one_by_one_grading(mixed_class: Path, tmp_path: Path) -> None:
    """Same seed, same results, message for message (where the student's code is deterministic);
    without a seed, the same statuses and scores."""
    _sandbox()
    from autograder.grading.engine import grade_notebook

    seeded = _batch(str(mixed_class), "--report", str(tmp_path / "seeded"), "--seed", str(SEED), "--workers", "2",
                    "--first-slot", str(SLOT))
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    fresh = _batch(str(mixed_class), "--report", str(tmp_path / "fresh"), "--workers", "2", "--first-slot", str(SLOT))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    records, unseeded = _records(tmp_path / "seeded"), _records(tmp_path / "fresh")
    assert len(records) == len(list(mixed_class.rglob("*.ipynb")))
    assert {r["assignment"] for r in records.values()} == set(make.gradable_assignments())
    scores = set()
    for key, record in records.items():
        assert record["status"] == "graded" and record["seed"] == SEED
        alone = grade_notebook(record["path"], seed=SEED, slot=SLOT + 2).to_json()
        assert _deterministic(record["result"]) == _deterministic(alone), key
        other = unseeded[key]["result"]
        assert unseeded[key]["seed"] != SEED
        assert [(e["name"], e["status"], e["score"]) for e in other["exercises"]] == \
               [(e["name"], e["status"], e["score"]) for e in alone["exercises"]], key
        scores.add(record["result"]["score"] / record["result"]["max_score"])
    assert 1 in scores and len(scores) > 2  # a mixed class, not all right or all wrong
    page = (tmp_path / "seeded" / "class_report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 * len(make.gradable_assignments())
    tests = list(csv.DictReader(open(tmp_path / "seeded" / "tests.csv")))
    assert len(tests) == sum(len(e["tests"]) for r in records.values() for e in r["result"]["exercises"])


@pytest.mark.slow
def test_student_names_reach_the_terminal_as_plain_text(tmp_path: Path) -> None:
    """A file name is the student's choice: escape sequences, carriage returns and rich markup in it
    are shown, never obeyed (they could recolour, overwrite or hide the instructor's lines)."""
    _sandbox()
    folder = tmp_path / "course" / "submitted" / "mallory[bold]" / "01_linear_models"
    folder.mkdir(parents=True)
    (folder / "a\nb\x1b[31mRED\x1b[0m\r=1+1.ipynb").write_text("not a notebook")
    done = _batch(str(tmp_path / "course"), "--report", str(tmp_path / "report"), "--workers", "1",
                  "--first-slot", str(SLOT))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 unusable" in done.stdout
    for shown in (done.stdout, done.stderr):
        assert "\x1b" not in shown and "\r" not in shown
    assert "mallory[bold]/01_linear_models/a b\\x1b[31mRED" in done.stdout


@pytest.mark.slow
def test_batch_resumes_and_regrades_only_what_changed(tmp_path: Path) -> None:
    _sandbox()
    root = tmp_path / "course"
    made = make.make_class(root, n=3, seed=11, assignments=["01_linear_models", "04_rnn", "02_mlp"])
    garbage = root / "submitted" / "zoe" / "01_linear_models" / "linear_models.ipynb"
    garbage.parent.mkdir(parents=True)
    garbage.write_text("this is not a notebook")
    report = tmp_path / "report"
    args = [str(root), "--report", str(report), "--workers", "1", "--first-slot", str(SLOT)]
    first = _batch(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "4 graded, 0 up to date" in first.stdout and "1 unusable" in first.stdout
    before = _records(report)
    assert before["zoe/01_linear_models/linear_models.ipynb"]["status"] == "unusable"
    assert "not a notebook" in before["zoe/01_linear_models/linear_models.ipynb"]["message"]

    again = _batch(*args)
    assert again.returncode == 0 and "0 graded, 4 up to date" in again.stdout
    assert _records(report) == before  # not touched

    changed = made[1]
    nb = json.loads(changed.path.read_text())
    nb["cells"].append(_code_cell("# one more cell\n"))
    changed.path.write_text(json.dumps(nb))
    (report / outputs.RECORDS / discover.discover([changed.path])[0].record_name).unlink(missing_ok=True)
    third = _batch(*args)
    assert third.returncode == 0 and "1 graded, 3 up to date" in third.stdout, third.stdout
    after = _records(report)
    changed_key = f"{changed.student}/{changed.assignment}/{changed.path.name}"
    assert after[changed_key]["sha256"] != before[changed_key]["sha256"]
    assert {k: v for k, v in after.items() if k != changed_key} == {k: v for k, v in before.items() if k != changed_key}

    forced = _batch(*args, "--force")
    assert forced.returncode == 0 and "4 graded, 0 up to date" in forced.stdout


ATTACK_KILL = '''
import os, signal
def softmax(X):
    for target in (1, -1, os.getppid()):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    return X
'''

ATTACK_KILL_AT_LOAD = '''
import os, signal
for target in (1, -1):
    try:
        os.kill(target, signal.SIGKILL)
        os.kill(target, signal.SIGSTOP)
    except OSError:
        pass
'''

ATTACK_LEAVE_BEHIND = '''
import ctypes, os, time
with open("/tmp/planted_by_attacker.py", "w") as f:
    f.write("ATTACKER-WAS-HERE")
os.makedirs("/tmp/attacker_dir/inner", exist_ok=True)
os.chmod("/tmp/attacker_dir", 0)
if os.access("/dev/shm", os.W_OK):
    with open("/dev/shm/attacker_shm", "w") as f:
        f.write("ATTACKER-WAS-HERE")
_libc = ctypes.CDLL(None, use_errno=True)
_shm = _libc.shmget(0xBEEF, 4096, 0o1666)
_msg = _libc.msgget(0xBEEE, 0o1666)
_child = os.fork()
if _child == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            try:
                with open("/tmp/daemon_heartbeat", "w") as f:
                    f.write(str(time.time()))
            except OSError:
                pass
            time.sleep(0.05)
    os._exit(0)
os.waitpid(_child, 0)
'''

VICTIM = '''
with open("/tmp/notes.txt", "w") as f:
    f.write("VICTIM-SECRET-7f3a")
import os
os.environ["VICTIM_TOKEN"] = "VICTIM-SECRET-7f3a"
'''

SPY = '''
import ctypes, os, stat
_libc = ctypes.CDLL(None, use_errno=True)
_found = []
for _root, _dirs, _files in os.walk("/"):
    if _root.startswith(("/proc", "/sys", "/usr", "/lib", "/bin", "/sbin")):
        _dirs[:] = []
        continue
    for _name in _files:
        _path = os.path.join(_root, _name)
        try:
            if not stat.S_ISREG(os.stat(_path).st_mode):
                continue
            with open(_path, "rb") as _f:
                _data = _f.read(1 << 20)
            if b"VICTIM-SECRET" in _data or b"ATTACKER-WAS" in _data:
                _found.append(_path)
        except OSError:
            pass
for _pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for _what in ("environ", "cmdline"):
        try:
            with open(f"/proc/{_pid}/{_what}", "rb") as _f:
                if b"VICTIM-SECRET" in _f.read():
                    _found.append(f"/proc/{_pid}/{_what}")
        except OSError:
            pass
_mem = "denied"
try:
    open("/proc/1/mem", "rb").read(1)
    _mem = "READ"
except OSError:
    pass
try:
    os.listdir("/proc/1/fd")
    _mem += "+fds"
except OSError:
    pass
_procs = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid()))
_shm_files = sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else []
raise RuntimeError(f"SPY tmp={sorted(os.listdir('/tmp'))} devshm={_shm_files} procs={_procs} shm={_libc.shmget(0xBEEF, 0, 0)} "
                   f"msg={_libc.msgget(0xBEEE, 0)} found={_found} zygote={_mem} rng={torch.initial_seed()}")
'''
SPY_CLEAN = "SPY tmp=[] devshm=[] procs=[] shm=-1 msg=-1 found=[] zygote=denied"


@pytest.mark.slow
def test_hostile_submissions_in_one_warm_sandbox_affect_no_one(tmp_path: Path) -> None:
    """One slot for everyone: killers, a submission that leaves a daemon, files and IPC objects
    behind, and spies looking for what earlier submissions left; honest work keeps full marks."""
    _sandbox()
    root = tmp_path / "course"
    honest = _correct()
    killer = _correct()
    [cell] = [c for c in killer["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "softmax"]
    cell["source"] = ATTACK_KILL
    killer["cells"].append(_code_cell(ATTACK_KILL_AT_LOAD))
    leaver, victim, spy = _correct(), _correct(), _correct()
    leaver["cells"].append(_code_cell(ATTACK_LEAVE_BEHIND))
    victim["cells"].append(_code_cell(VICTIM))
    spy["cells"].append(_code_cell(SPY))
    queue = [("s01_honest", honest), ("s02_killer", killer), ("s03_honest", honest), ("s04_leaver", leaver),
             ("s05_spy", spy), ("s06_victim", victim), ("s07_spy", spy), ("s08_honest", honest)]
    for student, nb in queue:
        _write(root, student, nb)
    report = tmp_path / "report"
    done = _batch(str(root), "--report", str(report), "--workers", "1", "--first-slot", str(SLOT + 3))
    assert done.returncode == 0, done.stderr[-3000:]
    records = {r["student"]: r for r in _records(report).values()}
    assert all(r["slot"] == SLOT + 3 for r in records.values())
    scores = {s: {e["name"]: e["score"] for e in r["result"]["exercises"]} for s, r in records.items()}
    for student in ("s01_honest", "s03_honest", "s08_honest", "s06_victim"):
        assert scores[student] == {"softmax": 10, "cross_entropy": 10}, (student, records[student]["result"])
    assert scores["s02_killer"]["cross_entropy"] == 10 and scores["s02_killer"]["softmax"] <= 1  # as `return X`
    assert scores["s04_leaver"] == {"softmax": 10, "cross_entropy": 10}
    seeds = set()
    for student in ("s05_spy", "s07_spy"):
        errors = " ".join(records[student]["result"]["errors"])
        assert SPY_CLEAN in errors, errors
        seeds.add(re.search(r"rng=(\d+)", errors).group(1))
        assert scores[student] == {"softmax": 10, "cross_entropy": 10}
    assert len(seeds) == 2  # every worker's random streams are seeded afresh, as in a new interpreter
    if os.geteuid() == 0:  # once the batch is over, nothing of the slot's uid is left
        uid = sandbox.BASE_UID + SLOT + 3
        deadline = time.monotonic() + 5  # the kernel may still be reaping the last sandbox
        while (alive := [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == []


def _uid_of(pid: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^Uid:\s+(\d+)", status, re.M)
    return int(match.group(1)) if match else None


SLOW_SOFTMAX = '''
import time
def softmax(X):
    time.sleep(4)
    return torch.softmax(X, dim=-1)
'''


@pytest.mark.slow
def test_a_slot_whose_zygote_dies_is_restarted_cold(tmp_path: Path) -> None:
    """If the zygote dies (killed from outside: nothing inside can), the submission being graded
    loses only the call that was running, and the next submissions are graded normally."""
    _sandbox()
    from autograder.sandbox import forkserver
    from autograder.grading.engine import grade_notebook
    from autograder.grading.runner import SuiteRunner

    correct = _write(tmp_path, "a", _correct())
    slow = _correct()
    [cell] = [c for c in slow["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "softmax"]
    cell["source"] = SLOW_SOFTMAX
    slow_path = _write(tmp_path, "b", slow)
    server = SuiteRunner().start()
    with forkserver.Slot(SLOT + 1) as slot:
        first = grade_notebook(correct, seed=SEED, launcher=slot, run_suites=server)
        assert first.score == 20 and slot.starts == 1
        os.killpg(slot.proc.pid, 9)  # between submissions
        again = grade_notebook(correct, seed=SEED, launcher=slot, run_suites=server)
        assert again.to_json() == first.to_json() and slot.starts == 2
        proc = slot.proc
        killer = threading.Timer(2.0, lambda: os.killpg(proc.pid, 9))  # during the first softmax call
        killer.start()
        hit = grade_notebook(slow_path, seed=SEED, launcher=slot, run_suites=server)
        killer.join()
        exercises = {e.name: e for e in hit.exercises}
        assert exercises["cross_entropy"].score == 10
        assert any("killed" in t.message or "crashed" in t.message or "ended" in t.message
                   for t in exercises["softmax"].tests if not t.passed)
        assert slot.starts == 3
        after = grade_notebook(correct, seed=SEED, launcher=slot, run_suites=server)
        assert after.to_json() == first.to_json()
    server.close()


@pytest.mark.slow
def test_ray_executor_grades_the_same_batch(tmp_path: Path) -> None:
    """A real local Ray instance, two actors (one slot each): the same records as the local pool."""
    _sandbox()
    pytest.importorskip("ray")
    root = tmp_path / "course"
    make.make_class(root, n=4, seed=3, assignments=["01_linear_models", "04_rnn"])
    local = _batch(str(root), "--report", str(tmp_path / "local"), "--seed", str(SEED), "--workers", "2",
                   "--first-slot", str(SLOT))
    assert local.returncode == 0, local.stderr[-2000:]
    ray = _batch(str(root), "--report", str(tmp_path / "ray"), "--seed", str(SEED), "--workers", "2",
                 "--executor", "ray", "--first-slot", str(SLOT))
    assert ray.returncode == 0, (ray.stdout[-2000:], ray.stderr[-3000:])
    assert "2 workers, ray)" in ray.stdout
    by_local, by_ray = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert by_ray.keys() == by_local.keys() and len(by_ray) == 4
    for key in by_local:
        assert by_ray[key]["result"] == by_local[key]["result"], key
    assert {r["slot"] for r in by_ray.values()} <= {SLOT, SLOT + 1}
