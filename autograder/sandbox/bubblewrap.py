"""How the worker is launched: inside bubblewrap, as an unprivileged uid, with resource limits.

The sandbox sees a read-only view of the system's ``/usr``, the Python installation and the
virtual environment, the worker package (``autograder/worker``, which holds no tests and no
reference), a private ``/proc``, a minimal ``/dev`` and a small private ``/tmp``. It has its own
user, PID, network (no interfaces but loopback), IPC, UTS and cgroup namespaces, cannot create
further user namespaces, starts from an empty environment, and dies with the grader. A seccomp
filter (``autograder/sandbox/seccomp.py``) denies the system calls student code never needs (debugging other
processes, mounts, namespaces, kernel keyrings, BPF, io_uring, sockets other than Unix sockets).
Since the worker is PID 1's child in its own PID namespace, killing the sandbox kills every process
the submission started: nothing is left behind between submissions.

When the grader runs as root, the worker runs as a dedicated unprivileged uid (one per concurrent
slot, so per-uid process limits apply to one submission at a time). The sources it needs may live
under directories that uid cannot traverse (``/root/.pyenv``), so they are first bind-mounted, in a
private mount namespace, onto a staging tmpfs the uid can reach; bubblewrap, started unprivileged,
binds them from there to their usual paths.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from autograder.sandbox import seccomp

WORKER_PACKAGE = Path(__file__).resolve().parents[1] / "worker"
SANDBOX_WORKER_ROOT = "/opt/autograder"  # the worker package appears as /opt/autograder/worker
BASE_UID = 61000  # slot n runs as uid BASE_UID + n when the grader is root
SLOT_COUNT = 1000  # slots 0..999: the uids 61000..61999 are the sandboxes'
LOCK_DIRS = ("/run/lock", "/var/lock", "/tmp")  # where the slots' lock files live (the first usable)
STAGING = "/mnt"  # an existing directory, shadowed by a tmpfs in the private mount namespace only


@dataclass(frozen=True)
class Limits:
    address_space: int = 6 << 30  # bytes of virtual memory (torch alone maps ~1.5 GiB)
    cpu_seconds: int = 300
    processes: int = 64  # tasks (threads count) of the sandbox uid
    file_size: int = 16 << 20
    open_files: int = 256
    tmp_bytes: int = 64 << 20  # the private /tmp (the only writable folder but /dev/shm)
    shm_bytes: int = 16 << 20  # the private /dev/shm
    tmp_inodes: int = 8192  # files and folders in /tmp (root only: bubblewrap cannot set it)
    shm_inodes: int = 1024


DEFAULT_LIMITS = Limits()


def _env(device: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/mpl",
    }
    if device != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


COURSE_ROOT = WORKER_PACKAGE.parent.parent  # never visible in the sandbox (hidden suites, reference)


def worker_python() -> str:
    """The Python the worker runs: the grader's own environment's interpreter."""
    return os.path.join(os.path.realpath(sys.prefix), "bin", "python")


@functools.lru_cache(maxsize=None)
def _isolated_path() -> tuple[str, ...]:
    """``sys.path`` of the worker's Python started with ``-I`` (as in the sandbox): what it imports
    from, ``.pth`` additions included. Read once from the interpreter itself."""
    try:
        done = subprocess.run([worker_python(), "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        import json

        return tuple(p for p in json.loads(done.stdout) if isinstance(p, str))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _python_sources() -> list[str]:
    """Directories the worker's Python needs, as real paths: the base installation, the virtual
    env and every other directory on its isolated ``sys.path`` (``.pth`` files may point outside
    the env). Nothing of the course tree is bound, except a virtual env inside it."""
    prefix = os.path.realpath(sys.prefix)
    paths = {os.path.realpath(sys.base_prefix), prefix}
    exe = os.path.realpath(worker_python())
    if not any(_inside(exe, p) for p in paths):
        paths.add(os.path.dirname(exe))
    course = os.path.realpath(COURSE_ROOT)
    for entry in _isolated_path():
        real = os.path.realpath(entry) if entry else ""
        if not real or not os.path.isdir(real) or real == "/" or _inside(course, real):
            continue
        if _inside(real, course) and not _inside(real, prefix):
            continue
        paths.add(real)
    # Nested paths are covered by their parent's bind.
    ordered = sorted(paths)
    return [p for p in ordered if not any(p != q and _inside(p, q) for q in ordered)]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "lib32", "bin", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(name):
            args += ["--ro-bind", name, name]
    return args


def _device_binds(device: str) -> list[str]:
    if device != "cuda":
        return []
    args = []
    for node in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(node), str(node)]
    return args


def worker_python_code() -> str:
    return (f"import sys; sys.path.insert(0, {SANDBOX_WORKER_ROOT!r}); "
            "from worker.main import main; main(int(sys.argv[1]), int(sys.argv[2]))")


@dataclass
class Launch:
    """A sandboxed worker's command line and the descriptors it needs (``pass_fds``), which the
    caller closes once the process has started."""

    command: list[str]
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def bwrap_path() -> str:
    """bubblewrap's absolute path (the sandbox refuses to start without it)."""
    return shutil.which("bwrap") or "bwrap"


def seccomp_fd() -> int | None:
    """A readable descriptor holding the seccomp program (a pipe: bubblewrap reads it to the end and
    closes it), or None on an architecture without a filter (see ``SECURITY.md``)."""
    data = seccomp.program()
    if data is None:
        return None
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)  # a few hundred bytes: always fits in the pipe's buffer
    finally:
        os.close(write_end)
    return read_end


@dataclass(frozen=True)
class SandboxSpec:
    """What to start in a sandbox. :func:`launch` turns it into a command line, in one place:
    callers (the cold worker, the fork server's zygote, the availability probe) never edit argv."""

    device: str = "cpu"
    slot: int = 0
    limits: Limits = DEFAULT_LIMITS
    code: str | None = None  # the Python code the sandboxed interpreter runs (default: the worker)
    as_pid_1: bool = False  # the program is the sandbox's PID 1 (a zygote reaping its own children)
    env: tuple[tuple[str, str], ...] = ()  # variables set in the sandbox beyond the fixed ones


def bwrap_command(binds: list[tuple[str, str]], spec: SandboxSpec, seccomp_fd: int | None = None,
                  scratch: tuple[str, str] | None = None) -> list[str]:
    """The bubblewrap invocation, given (source, destination) read-only binds. ``scratch``: the
    (tmp, shm) file systems prepared by root with an inode limit, bound as the private /tmp and
    /dev/shm; without it, bubblewrap makes them (a size limit only)."""
    device, limits = spec.device, spec.limits
    cmd = [bwrap_path(), *(["--as-pid-1"] if spec.as_pid_1 else []), "--unshare-all", "--unshare-user",
           "--disable-userns", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
           "--clearenv"]
    for key, value in {**_env(device), **dict(spec.env)}.items():
        cmd += ["--setenv", key, value]
    # The private /tmp and /dev first, the read-only binds after: a course (and its .venv) checked
    # out under /tmp is then bound on top of the private /tmp instead of being hidden by it.
    cmd += ["--proc", "/proc", "--dev", "/dev", *_device_binds(device)]
    if scratch is not None:
        cmd += ["--bind", scratch[0], "/tmp", "--bind", scratch[1], "/dev/shm"]
    else:
        cmd += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm"]
    cmd += _system_binds()
    for source, dest in binds:
        cmd += ["--ro-bind", source, dest]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    cmd += ["--", worker_python(), "-I", "-c", spec.code if spec.code is not None else worker_python_code()]
    return cmd


def sandboxed_command(spec: SandboxSpec = SandboxSpec(), seccomp_fd: int | None = None) -> list[str]:
    """The full command line (limits, then the sandbox); ``seccomp_fd`` must be passed to it."""
    return prlimit_prefix(spec.limits, True) + oom_prefix() + _sandboxed(spec, seccomp_fd)


def launch(spec: SandboxSpec = SandboxSpec()) -> Launch:
    """How to start what ``spec`` says (by default a worker): the command line plus the seccomp
    program's descriptor."""
    fd = seccomp_fd()
    return Launch(sandboxed_command(spec, fd), [] if fd is None else [fd])


def cpu_share(slot: int) -> list[str]:
    """The command prefix that gives a slot's sandbox (warm or cold) its CPU share: pinned to one CPU
    of those this process may use (slot ``k`` on the ``k``-th, modulo their number; the seccomp filter keeps the
    submission from moving off it) and niced, so that one submission's busy processes slow down
    only the slots that share its CPU, never the graders. Empty where ``taskset`` is missing."""
    if shutil.which("taskset") is None or shutil.which("nice") is None:
        return []
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except OSError:
        return []
    return ["taskset", "--cpu-list", str(cpus[slot % len(cpus)]), "nice", "-n", str(SANDBOX_NICE)]


SANDBOX_NICE = 5


def oom_prefix() -> list[str]:
    """Make the sandbox the kernel's first choice when memory runs out (``oom_score_adj`` 1000,
    set while still root so that the submission cannot lower it again): without cgroups, the
    per-process address-space limit does not bound a submission's processes together."""
    return ["choom", "-n", "1000", "--"] if shutil.which("choom") else []


def _sandboxed(spec: SandboxSpec, seccomp_fd: int | None = None) -> list[str]:
    slot, limits = spec.slot, spec.limits
    sources = _python_sources()
    worker_dest = f"{SANDBOX_WORKER_ROOT}/worker"
    if os.geteuid() != 0:
        binds = [(p, p) for p in sources] + [(str(WORKER_PACKAGE), worker_dest)]
        return ["env", "-i", *bwrap_command(binds, spec, seccomp_fd)]
    # Root: stage the sources where an unprivileged uid can reach them, then drop to that uid.
    all_sources = sources + [str(WORKER_PACKAGE)]
    staged = [f"{STAGING}/{i}" for i in range(len(all_sources))]
    binds = [(s, d) for s, d in zip(staged, sources)] + [(staged[-1], worker_dest)]
    uid = BASE_UID + slot
    # The sandbox joins its slot's control groups first (CPU weight, task cap): a submission that
    # starts as many processes as it can gets one slot's share of the CPU, not the machine.
    script = [f"echo $$ > {group}/cgroup.procs 2>/dev/null || true" for group in slot_cgroups(slot, limits)]
    script.append(f"mount -t tmpfs -o size=64k,mode=755 agstage {STAGING}")
    for i, (source, target) in enumerate(zip(all_sources, staged)):
        script += [f'mkdir {target}', f'mount --bind "${i + 1}" {target}', f"mount -o remount,bind,ro {target}"]
    # The private /tmp and /dev/shm, made here because only root can bound their inodes (each inode
    # and extended attribute is kernel memory that the size limit does not count).
    scratch = (f"{STAGING}/tmp", f"{STAGING}/shm")
    for target, size, inodes in ((scratch[0], limits.tmp_bytes, limits.tmp_inodes),
                                 (scratch[1], limits.shm_bytes, limits.shm_inodes)):
        script += [f"mkdir {target}",
                   f"mount -t tmpfs -o size={size},nr_inodes={inodes},mode=1777,nosuid,nodev agscratch {target}"]
    script.append(f'shift {len(all_sources)}; cd /; exec env -i "$@"')  # nothing of the shell reaches PID 1
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]
    return ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-ec", "; ".join(script), "sh", *all_sources, *drop,
            *bwrap_command(binds, spec, seccomp_fd, scratch)]


CGROUP_ROOT = "/sys/fs/cgroup"


def _write(path: str, value: str) -> bool:
    try:
        with open(path, "w") as handle:
            handle.write(value)
        return True
    except OSError:
        return False


def slot_cgroups(slot: int, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """The control groups (created on demand, root only, best effort) the sandbox of ``slot`` runs
    in: a CPU group of the default weight, so that every sandbox on the machine gets an equal
    share of the CPU however many tasks it runs, and a ``pids`` group capping its tasks. Absent
    where cgroups are not writable (a container, not root): the uid limits still apply."""
    if os.geteuid() != 0 or not os.path.isdir(CGROUP_ROOT):
        return []
    tasks = str(limits.processes + 8)  # bubblewrap's own processes on top of the submission's
    groups = []
    # Each slot's group sits next to the machine's other processes (not under a common parent),
    # so that a sandbox weighs like one process: never more, however many tasks it starts.
    if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers"):  # cgroup v2, one hierarchy
        group = f"{CGROUP_ROOT}/autograder-slot-{slot}"
        try:
            os.makedirs(group, exist_ok=True)
        except OSError:
            return []
        for controller in ("cpu", "pids"):
            _write(f"{CGROUP_ROOT}/cgroup.subtree_control", f"+{controller}")
        _write(f"{group}/pids.max", tasks)
        return [group]
    for controller in ("cpu", "pids"):  # cgroup v1, one hierarchy per controller
        base = f"{CGROUP_ROOT}/{controller}"
        if not os.path.isfile(f"{base}/cgroup.procs"):
            continue
        group = f"{base}/autograder-slot-{slot}"
        try:
            os.makedirs(group, exist_ok=True)
        except OSError:
            continue
        if controller == "pids":
            _write(f"{group}/pids.max", tasks)
        groups.append(group)
    return groups


def plain_command(limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """The unsandboxed worker (``--no-sandbox`` and students' local checks): same code, same
    channel, only a separate process with a clean environment."""
    env = ["env", "-i", *[f"{k}={v}" for k, v in _env("cpu").items() if k != "MPLCONFIGDIR"]]
    code = (f"import sys; sys.path.insert(0, {str(WORKER_PACKAGE.parent)!r}); "
            "from worker.main import main; main(int(sys.argv[1]), int(sys.argv[2]))")
    return [*prlimit_prefix(limits, False), *env, os.path.join(sys.prefix, "bin", "python"), "-I", "-c", code]


def prlimit_prefix(limits: Limits, sandboxed: bool) -> list[str]:
    """Resource limits for the worker tree, applied by util-linux ``prlimit`` before anything else
    runs (no ``preexec_fn``: the grader may have threads)."""
    args = ["prlimit", f"--cpu={limits.cpu_seconds}", f"--fsize={limits.file_size}",
            f"--nofile={limits.open_files}", "--core=0", f"--as={limits.address_space}"]
    if sandboxed:
        args.append(f"--nproc={process_limit(limits)}")
    return [*args, "--"]


def process_limit(limits: Limits) -> int:
    """RLIMIT_NPROC for the sandbox. The kernel counts every task (threads included) of the real
    uid against it. As root, the sandbox runs as the slot's own uid: the limit is the submission's.
    Otherwise the sandbox's uid is the grader's, whose own tasks (this process's threads, a CI
    runner's agent) count too: the limit is then what that uid runs now plus the submission's
    share, shared by concurrent slots (SECURITY.md: run as root to isolate slots)."""
    if os.geteuid() == 0:
        return limits.processes
    import resource

    wanted = tasks_of(os.getuid()) + limits.processes
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]  # not root: cannot be raised
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def tasks_of(uid: int) -> int:
    """How many tasks (threads included) processes whose real uid is ``uid`` have now."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as handle:
                status = handle.read()
        except OSError:
            continue
        real_uid = threads = None
        for line in status.splitlines():
            if line.startswith("Uid:"):
                real_uid = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        if real_uid == uid:
            total += threads or 1
    return total


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (for the outer bubblewrap process: the sandbox's PID 1)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid).encode():
            found.append(int(entry))
    return found


def tree_usage(root: int) -> tuple[float, float]:
    """(CPU seconds, seconds spent runnable but waiting for a CPU) of ``root`` and every process
    below it, threads and already reaped children included (``/proc``'s ``stat`` and
    ``schedstat``). The CPU time is what the submission consumed, whatever the machine's load; the
    waiting time says whether a slow call was slowed by other load (the machine's fault) or by the
    code's own sleeping or blocking (the submission's)."""
    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0.0, 0.0
    stats: dict[int, list[bytes]] = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            stats[int(entry)] = fields
        except (OSError, IndexError, ValueError):
            continue
    below: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        below.setdefault(parent, []).append(pid)
    tick = os.sysconf("SC_CLK_TCK")
    cpu = wait = 0.0
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        fields = stats[pid]
        try:  # utime, stime, cutime, cstime (fields 14-17 of stat; state is field 3)
            cpu += sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
        except (IndexError, ValueError):
            pass
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as handle:
                    wait += int(handle.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(below.get(pid, []))
    return cpu, wait


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def kill_sandbox(outer_pid: int) -> list[int]:
    """SIGKILL the PID 1 of the sandbox started as ``outer_pid`` (the outer bubblewrap process) and
    return its pid, for :func:`wait_gone`. The kernel kills every process of its PID namespace,
    and bubblewrap, its parent, reaps it and exits. Signals go through a pidfd opened while the
    process is still ``outer_pid``'s child, so a recycled pid is never signalled."""
    import signal

    killed = []
    for pid in children(outer_pid):
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError) as exc:  # no pidfds here: killing the outer process does it
            if getattr(exc, "errno", None) != errno.ESRCH:
                killed.append(pid)
            continue
        try:
            if _parent(pid) == outer_pid:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed.append(pid)
        except OSError:
            pass
        finally:
            os.close(fd)
    return killed


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def wait_gone(pids: list[int], timeout: float = 5.0) -> bool:
    """Wait until none of ``pids`` is alive. When a sandbox's PID 1 is gone (or a zombie), the
    kernel has already killed and reaped every process of its PID namespace, so nothing of the
    submission is left to interfere with the next one (its uid's process count included)."""
    import time

    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class SlotBusy(OSError):
    """Every sandbox slot is taken by another grading on this machine."""


class SlotLease:
    """A sandbox slot held by this grading, and so its uid (``BASE_UID + slot`` as root), with its
    own per-uid process limit: no other grading on this machine (``grade``, ``check``, ``ci``,
    ``nbgrader autograde``, ``grade-batch``) uses it until :meth:`release`. The hold is an
    ``flock`` on a per-slot lock file: the kernel drops it when this process ends, however it ends."""

    def __init__(self, slot: int, fd: int | None) -> None:
        self.slot = slot
        self._fd = fd

    @property
    def uid(self) -> int:
        return BASE_UID + self.slot if os.geteuid() == 0 else os.getuid()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> "SlotLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_dir() -> str:
    for base in LOCK_DIRS:
        folder = os.path.join(base, f"autograder-slots-{os.geteuid()}")
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    raise SlotBusy(errno.EACCES, "no writable folder for the sandbox slots' lock files")


def lease_slot(preferred: int = 0) -> SlotLease:
    """Hold the first free slot from ``preferred`` on (wrapping around). A slot is free when no
    grading holds its lock and, as root, no process of its uid is left (a sandbox still dying)."""
    import fcntl

    folder = _lock_dir()
    for offset in range(SLOT_COUNT):
        slot = (preferred + offset) % SLOT_COUNT
        fd = os.open(os.path.join(folder, f"slot-{slot}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if os.geteuid() == 0 and tasks_of(BASE_UID + slot):
            os.close(fd)
            continue
        return SlotLease(slot, fd)
    raise SlotBusy(errno.EAGAIN, f"all {SLOT_COUNT} sandbox slots are in use on this machine")


#: What bubblewrap (or the kernel, through it) says when the machine, not the submission, could not
#: start a sandbox: retried, then a grader error, never the student's crash.
RESOURCE_ERRORS = ("Resource temporarily unavailable", "Cannot allocate memory", "No space left on device",
                   "Too many open files", "Creating new namespace failed")


def is_resource_error(text: str) -> bool:
    return any(marker in text for marker in RESOURCE_ERRORS)


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the sandbox works here; otherwise one line saying why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and (shutil.which("setpriv") is None or shutil.which("unshare") is None):
        return "setpriv/unshare (util-linux) are missing"
    probe = launch(SandboxSpec(code="import sys; sys.exit(0)"))
    try:
        done = subprocess.run(probe.command, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                              pass_fds=probe.fds)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start ({exc.__class__.__name__})"
    finally:
        probe.close()
    if done.returncode != 0:
        line = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        return f"bubblewrap could not start: {line[:200]}"
    return None
