"""The sandbox's own guarantees, tested directly (the adversarial corpus tests them end to end):

- the seccomp program, run by a small classic-BPF interpreter on synthetic system calls;
- the command line: namespaces, clean environment, read-only root, limits, filter, uid per slot;
- inside a real sandbox (where one can start): what a process there sees and may do;
- official grading fails closed (exit 2, one line) without bubblewrap, or with one that cannot
  start (as on kernels that forbid unprivileged user namespaces).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.sandbox import bubblewrap as sandbox
from autograder.sandbox import seccomp

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = next(p for p in (ROOT / "assignments/01_linear_models/linear_models.ipynb",
                            ROOT / "solutions/01_linear_models/linear_models.ipynb") if p.is_file())


# ------------------------------------------------------------------------------------ seccomp
def run_bpf(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Evaluate a classic BPF seccomp program (the opcodes seccomp.py emits) on one system call."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    code = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    for _ in range(len(code) + 1):
        op, jt, jf, k = code[pc]
        if op == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif op in (0x15, 0x35, 0x45):
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
            pc += 1 + (jt if taken else jf)
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("the program does not terminate")


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_program_denies_what_student_code_never_needs(machine):
    arch, numbers, _ = seccomp.ARCHITECTURES[machine]
    program = seccomp.program(machine)
    assert program is not None and len(program) % 8 == 0
    eperm = seccomp.RET_ERRNO | errno.EPERM
    for name in seccomp.DENIED:
        if name in numbers:
            assert run_bpf(program, numbers[name], arch) == eperm, name
    socket_nr, clone_nr = numbers["socket"], numbers["clone"]
    assert run_bpf(program, socket_nr, arch, (1,)) == seccomp.RET_ALLOW  # AF_UNIX
    for family in (2, 10, 16, 17):  # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET
        assert run_bpf(program, socket_nr, arch, (family,)) == seccomp.RET_ERRNO | errno.EAFNOSUPPORT
    assert run_bpf(program, clone_nr, arch, (0x3D0F00,)) == seccomp.RET_ALLOW  # pthread_create's flags
    assert run_bpf(program, clone_nr, arch, (0x11,)) == seccomp.RET_ALLOW  # fork: SIGCHLD
    for flag in (0x10000000, 0x20000000, 0x40000000, 0x00020000, 0x08000000, 0x04000000, 0x02000000):
        assert run_bpf(program, clone_nr, arch, (flag | 0x11,)) == eperm, hex(flag)
    assert run_bpf(program, numbers["clone3"], arch) == seccomp.RET_ERRNO | errno.ENOSYS
    for allowed in (0, 1, 3, 9, 57, 61, 202, 231):  # read/write/close/mmap/fork/wait4/futex/exit_group (x86)
        if allowed not in numbers.values():
            assert run_bpf(program, allowed, arch) == seccomp.RET_ALLOW
    assert run_bpf(program, 0, 0x40000003) == seccomp.RET_KILL_PROCESS  # i386 system calls on x86-64
    other = seccomp.ARCHITECTURES["aarch64" if machine == "x86_64" else "x86_64"][0]
    assert run_bpf(program, 0, other) == seccomp.RET_KILL_PROCESS


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_limits_and_priorities_of_the_caller_only(machine):
    """Another process of the sandbox (the warm sandbox's PID 1, which forks every later submission)
    has the same uid: lowering its limits or priority must fail."""
    arch, numbers, _ = seccomp.ARCHITECTURES[machine]
    program = seccomp.program(machine)
    eperm = seccomp.RET_ERRNO | errno.EPERM
    calls = {  # name: (arguments on itself, arguments on another target)
        "prlimit64": [((0, 9), (1, 9)), ((0, 7), (12345, 7))],
        "setpriority": [((0, 0, 19), (0, 1, 19)), ((0, 0, 19), (2, 0, 19)), ((0, 0, 19), (1, 0, 19))],
        "sched_setscheduler": [((0, 5), (1, 5))],
        "sched_setparam": [((0,), (1,))],
        "sched_setattr": [((0,), (1,))],
        "ioprio_set": [((1, 0, 7), (1, 1, 7)), ((1, 0, 7), (3, 0, 7))],  # IOPRIO_WHO_USER, uid 0 = own uid
    }
    assert set(calls) == set(seccomp.SELF_ONLY)
    for name, pairs in calls.items():
        for itself, other in pairs:
            assert run_bpf(program, numbers[name], arch, itself) == seccomp.RET_ALLOW, (name, itself)
            assert run_bpf(program, numbers[name], arch, other) == eperm, (name, other)


def test_seccomp_refuses_x32_system_calls():
    arch = seccomp.ARCHITECTURES["x86_64"][0]
    program = seccomp.program("x86_64")
    assert run_bpf(program, seccomp.X32_SYSCALL_BIT | 101, arch) == seccomp.RET_ERRNO | errno.EPERM


def test_seccomp_unknown_architecture_has_no_program():
    assert seccomp.program("riscv64") is None


def test_seccomp_descriptor_holds_the_program():
    fd = sandbox.seccomp_fd()
    if seccomp.program() is None:
        assert fd is None
        return
    try:
        assert os.read(fd, 1 << 16) == seccomp.program()
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- command line
def test_command_line_sets_up_every_layer():
    spec = sandbox.launch(sandbox.SandboxSpec(slot=3))
    try:
        cmd = spec.command
        nproc = f"--nproc={sandbox.process_limit(sandbox.DEFAULT_LIMITS)}"
        assert cmd[0] == "prlimit" and nproc in cmd and any(a.startswith("--as=") for a in cmd)
        assert "--core=0" in cmd and any(a.startswith("--fsize=") for a in cmd)
        bwrap = next(i for i, a in enumerate(cmd) if os.path.basename(a) == "bwrap")
        args = cmd[bwrap:]
        for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                     "--clearenv"):
            assert flag in args, flag
        pairs = set(zip(args, args[1:]))
        assert {("--cap-drop", "ALL"), ("--remount-ro", "/"), ("--remount-ro", "/dev")} <= pairs
        writable = [args[i + 1:i + 3] for i, a in enumerate(args) if a == "--bind"]
        if os.geteuid() == 0:  # root prepares /tmp and /dev/shm with an inode limit, bound read-write
            assert [dest for _, dest in writable] == ["/tmp", "/dev/shm"], writable
            assert any("nr_inodes=" in a for a in cmd[:bwrap])
        else:
            assert ("--tmpfs", "/tmp") in pairs and writable == []
        assert "--share-net" not in args
        if spec.fds:
            assert args[args.index("--seccomp") + 1] == str(spec.fds[0])
        assert "env" in cmd[:bwrap] and "-i" in cmd[:bwrap]
        if os.geteuid() == 0:
            assert f"--reuid={sandbox.BASE_UID + 3}" in cmd and "--clear-groups" in cmd
    finally:
        spec.close()


def test_process_limit_is_the_slots_own_as_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert sandbox.process_limit(sandbox.DEFAULT_LIMITS) == sandbox.DEFAULT_LIMITS.processes


def test_process_limit_leaves_room_for_the_graders_own_tasks(monkeypatch):
    """Not root: the sandbox shares the grader's uid, whose tasks (a CI runner's agent, this
    process's threads) count against RLIMIT_NPROC too; bubblewrap could not even start otherwise."""
    import resource

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sandbox, "tasks_of", lambda uid: 100)
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    wanted = 100 + sandbox.DEFAULT_LIMITS.processes
    assert sandbox.process_limit(sandbox.DEFAULT_LIMITS) == (wanted if hard == resource.RLIM_INFINITY
                                                              else min(wanted, hard))


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="needs root and a system Python")
def test_tasks_of_counts_threads_of_a_uid():
    uid = sandbox.BASE_UID + 99  # a slot no test grades on
    code = "import threading, time\nfor _ in range(3): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n" \
           "print('ready', flush=True)\ntime.sleep(30)"
    child = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3", "-c",
                              code], stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert child.stdout.readline().strip() == "ready"
        assert sandbox.tasks_of(uid) == 4  # the main thread and three more
    finally:
        child.kill()
        child.wait()


# --------------------------------------------------------------------------- inside a sandbox
PROBE = r"""
import ctypes, errno, json, os, resource, socket
libc = ctypes.CDLL(None, use_errno=True)
out = {"env": sorted(os.environ), "uid": os.getuid(), "pid": os.getpid()}
out["pid1_env"] = open("/proc/1/environ", "rb").read().decode(errors="replace")
def writable(path):
    try:
        open(path, "w").close()
        return True
    except OSError:
        return False
out["writable"] = {p: writable(p) for p in ("/x", "/etc/x", "/dev/x", "/tmp/x", "/opt/autograder/worker/x")}
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    out["inet"] = "opened"
except OSError as e:
    out["inet"] = errno.errorcode[e.errno]
out["ptrace"] = libc.ptrace(0, 0, 0, 0), errno.errorcode.get(ctypes.get_errno())
out["unshare"] = libc.unshare(0x10000000), errno.errorcode.get(ctypes.get_errno())
out["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
out["oom"] = open("/proc/self/oom_score_adj").read().strip()
out["fds"] = sorted(int(f) for f in os.listdir("/proc/self/fd"))
out["visible"] = sorted(os.listdir("/"))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    reason = sandbox.unavailable_reason()
    if reason:
        pytest.skip(f"the sandbox cannot start here: {reason}")
    spec = sandbox.launch(sandbox.SandboxSpec(slot=7))
    cmd = spec.command[: spec.command.index("-I") + 1] + ["-c", PROBE]
    try:
        done = subprocess.run(cmd, pass_fds=spec.fds, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "AUTOGRADER_CANARY": "canary-value-1234"})
    finally:
        spec.close()
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_sandbox_starts_from_an_empty_environment(probe):
    assert "AUTOGRADER_CANARY" not in probe["env"]
    assert set(probe["env"]) <= set(sandbox._env("cpu")) | {"PWD"}
    assert probe["pid1_env"] == ""  # PID 1 (bubblewrap) exposes nothing of the grader's environment


def test_sandbox_runs_as_the_slot_uid_with_limits(probe):
    if os.geteuid() == 0:
        assert probe["uid"] == sandbox.BASE_UID + 7
    if os.geteuid() == 0:
        assert probe["nproc"] == sandbox.DEFAULT_LIMITS.processes
    else:  # the grader's own tasks count too (see process_limit)
        assert probe["nproc"] >= sandbox.DEFAULT_LIMITS.processes
    if shutil.which("choom"):
        assert probe["oom"] == "1000"
    assert probe["pid"] > 1  # in its own PID namespace, below bubblewrap's PID 1


def test_sandbox_file_system_is_read_only_but_tmp(probe):
    assert probe["writable"] == {"/x": False, "/etc/x": False, "/dev/x": False, "/tmp/x": True,
                                 "/opt/autograder/worker/x": False}
    assert "work" not in probe["visible"] or "reference" not in probe["visible"]
    assert probe["fds"] == [0, 1, 2, 3]  # the seccomp descriptor was read and closed by bubblewrap


def test_sandbox_seccomp_filter_is_active(probe):
    if seccomp.program() is None:
        pytest.skip("no seccomp program for this architecture")
    assert probe["inet"] == "EAFNOSUPPORT"
    assert probe["ptrace"] == [-1, "EPERM"]
    assert probe["unshare"] == [-1, "EPERM"]


# ------------------------------------------------------------------------------- fail closed
def _tools_without_bwrap(folder: Path, fake_bwrap: str | None = None) -> str:
    """A PATH with the tools the sandbox needs, but no (or a broken) bubblewrap."""
    folder.mkdir()
    folder.chmod(0o755)
    for tool in ("prlimit", "choom", "env", "setpriv", "unshare", "sh"):
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    if fake_bwrap is not None:
        script = folder / "bwrap"
        script.write_text(f"#!/bin/sh\necho '{fake_bwrap}' >&2\nexit 1\n")
        script.chmod(0o755)
    return str(folder)


def _grade(path: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "autograder", "grade", str(NOTEBOOK), "--format", "json", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_official_grading_refuses_to_run_without_bubblewrap(tmp_path):
    done = _grade(_tools_without_bwrap(tmp_path / "bin"))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bubblewrap" in lines[0] and "sandbox" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_official_grading_refuses_a_bubblewrap_that_cannot_start():
    import tempfile

    # Outside pytest's private temporary folder: as root, the fake runs as the slot's uid.
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        done = _grade(_tools_without_bwrap(Path(folder) / "bin", "bwrap: setting up uid map: Permission denied"))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "uid map: Permission denied" in lines[0], done.stderr


def test_engine_refuses_before_running_any_student_code(monkeypatch):
    from autograder.grading import engine
    from autograder.errors import SandboxUnavailable

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name, *a, **k))
    sandbox.unavailable_reason.cache_clear()
    started = []
    monkeypatch.setattr(engine.StudentSession, "start", lambda self: started.append(self))
    try:
        with pytest.raises(SandboxUnavailable, match="bubblewrap"):
            engine.grade_notebook(NOTEBOOK)
    finally:
        sandbox.unavailable_reason.cache_clear()
    assert started == []
