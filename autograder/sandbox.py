"""How the worker is launched: inside bubblewrap, as an unprivileged uid, with resource limits.

The sandbox sees a read-only view of the system's ``/usr``, the Python installation and the
virtual environment, the worker package (``autograder/worker``, which holds no tests and no
reference), a private ``/proc``, a minimal ``/dev`` and a small private ``/tmp``. It has its own
user, PID, network (no interfaces but loopback), IPC, UTS and cgroup namespaces, cannot create
further user namespaces, starts from an empty environment, and dies with the grader.

When the grader runs as root, the worker runs as a dedicated unprivileged uid (one per concurrent
slot, so per-uid process limits apply to one submission at a time). The sources it needs may live
under directories that uid cannot traverse (``/root/.pyenv``), so they are first bind-mounted, in a
private mount namespace, onto a staging tmpfs the uid can reach; bubblewrap, started unprivileged,
binds them from there to their usual paths.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

WORKER_PACKAGE = Path(__file__).resolve().parent / "worker"
SANDBOX_WORKER_ROOT = "/opt/autograder"  # the worker package appears as /opt/autograder/worker
BASE_UID = 61000  # slot n runs as uid BASE_UID + n when the grader is root
STAGING = "/mnt"  # an existing directory, shadowed by a tmpfs in the private mount namespace only


@dataclass(frozen=True)
class Limits:
    address_space: int = 6 << 30  # bytes of virtual memory (torch alone maps ~1.5 GiB)
    cpu_seconds: int = 300
    processes: int = 64  # tasks (threads count) of the sandbox uid
    file_size: int = 16 << 20
    open_files: int = 256
    tmp_bytes: int = 64 << 20


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


def _python_sources() -> list[str]:
    """Directories the worker's Python needs: the base installation and the virtual env."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(p + os.sep) for p in paths):
        paths.add(os.path.dirname(exe))
    # Nested paths are covered by their parent's bind.
    ordered = sorted(paths)
    return [p for p in ordered if not any(p != q and p.startswith(q + os.sep) for q in ordered)]


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


def bwrap_command(binds: list[tuple[str, str]], device: str, limits: Limits) -> list[str]:
    """The bubblewrap invocation, given (source, destination) read-only binds."""
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
           "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox", "--clearenv"]
    for key, value in _env(device).items():
        cmd += ["--setenv", key, value]
    cmd += _system_binds()
    for source, dest in binds:
        cmd += ["--ro-bind", source, dest]
    cmd += ["--proc", "/proc", "--dev", "/dev", *_device_binds(device),
            "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    python = os.path.join(os.path.realpath(sys.prefix), "bin", "python")
    cmd += ["--", python, "-I", "-c", worker_python_code()]
    return cmd


def sandboxed_command(device: str = "cpu", slot: int = 0, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    return prlimit_prefix(limits, True) + _sandboxed(device, slot, limits)


def _sandboxed(device: str, slot: int, limits: Limits) -> list[str]:
    sources = _python_sources()
    worker_dest = f"{SANDBOX_WORKER_ROOT}/worker"
    if os.geteuid() != 0:
        binds = [(p, p) for p in sources] + [(str(WORKER_PACKAGE), worker_dest)]
        return ["env", "-i", shutil.which("bwrap") or "bwrap", *bwrap_command(binds, device, limits)[1:]]
    # Root: stage the sources where an unprivileged uid can reach them, then drop to that uid.
    all_sources = sources + [str(WORKER_PACKAGE)]
    staged = [f"{STAGING}/{i}" for i in range(len(all_sources))]
    binds = [(s, d) for s, d in zip(staged, sources)] + [(staged[-1], worker_dest)]
    uid = BASE_UID + slot
    script = [f"mount -t tmpfs -o size=64k,mode=755 agstage {STAGING}"]
    for i, (source, target) in enumerate(zip(all_sources, staged)):
        script += [f'mkdir {target}', f'mount --bind "${i + 1}" {target}', f"mount -o remount,bind,ro {target}"]
    script.append(f'shift {len(all_sources)}; exec "$@"')
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]
    return ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-ec", "; ".join(script), "sh", *all_sources, *drop,
            *bwrap_command(binds, device, limits)]


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
        args.append(f"--nproc={limits.processes}")
    return [*args, "--"]


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the sandbox works here; otherwise one line saying why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and (shutil.which("setpriv") is None or shutil.which("unshare") is None):
        return "setpriv/unshare (util-linux) are missing"
    cmd = sandboxed_command()
    probe = cmd[: cmd.index("-I") + 1] + ["-c", "import sys; sys.exit(0)"]
    try:
        done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start ({exc.__class__.__name__})"
    if done.returncode != 0:
        line = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        return f"bubblewrap could not start: {line[:200]}"
    return None
