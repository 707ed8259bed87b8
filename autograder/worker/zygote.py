"""The sandbox's fork server ("zygote"): torch imported once, one forked worker per submission.

Runs inside the sandbox (bubblewrap, ``--as-pid-1``: it is PID 1 of the sandbox's PID namespace)
as the slot's unprivileged uid, under the same limits and seccomp filter as a cold worker. It
imports what every worker needs (torch, safetensors, numpy, gymnasium, this package), warms the
slow first uses (autograd, ``torch.optim``, convolutions, the wire format), then serves the
grader on one ``AF_UNIX`` ``SOCK_SEQPACKET`` descriptor (named on its command line). Messages are
small JSON objects; descriptors travel with ``SCM_RIGHTS``:

- ``fork`` + three descriptors (request pipe, reply pipe, output pipe): fork a child that becomes an
  ordinary worker (``worker.main``) on those pipes, its stdout and stderr on the output pipe, in a
  session of its own, holding no other descriptor (not this socket). Reply ``{"ok", "pid"}``.
- ``wait`` ``{"pid", "timeout"}``: the child's exit status as ``subprocess`` reports it (negative
  signal number), or ``null`` if it is still running after ``timeout`` seconds.
- ``reset``: kill every other process of the sandbox, reap them, empty its writable file systems
  (``/tmp``, ``/dev/shm``) and remove System V IPC objects, so that nothing of one submission is left for the next. Reply ``{"ok", "cpu",
  "children_cpu"}`` (``ok`` false when something could not be removed: the grader then discards the
  whole sandbox; CPU seconds of the zygote itself and of all the processes it reaped).
- ``ping``.

Why the children cannot reach it: as PID 1 of the namespace it ignores every signal it has no
handler for, even ``SIGKILL``, when sent from inside (``kill(-1)`` skips it too); it is not
dumpable, so processes of the same uid can read neither its memory nor its descriptors under
``/proc``; the children close its socket before any student code runs; the file system outside its
temporary file systems is read-only, so nothing can be planted where a later worker would import or
open it.
When it ends (the grader closed the socket, or it was killed from outside), the kernel kills every
process of the namespace.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import socket
import stat
import sys
import time
from typing import Any

MAX_MESSAGE = 1 << 16
TMP = "/tmp"
PR_SET_DUMPABLE = 4
IPC_RMID = 0
RESET_DEADLINE = 15.0  # seconds to get rid of every other process before giving up (a loaded machine is slow)
KEEP_STATUSES = 256


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _other_pids() -> list[int]:
    me = os.getpid()
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me)


def _open_fds() -> list[int]:
    return [int(fd) for fd in os.listdir("/proc/self/fd") if fd.isdigit()]


class Zygote:
    def __init__(self, control_fd: int) -> None:
        self.sock = socket.socket(fileno=control_fd)
        self.children: set[int] = set()
        self.statuses: dict[int, int] = {}
        # Every writable file system (/tmp, /dev/shm) and its mode, emptied between submissions;
        # the root and /dev are read-only (the grader remounts them so), so nothing else persists.
        mounts = writable_mounts()
        if "/" in mounts or "/dev" in mounts:
            raise RuntimeError(f"refusing to serve: the sandbox's {'/' if '/' in mounts else '/dev'} is writable")
        self.writable = {root: stat.S_IMODE(os.stat(root).st_mode) for root in mounts}
        # What every forked worker inherits from PID 1: checked unchanged at every reset.
        self.settings = own_settings()

    # ----------------------------------------------------------------------------- start-up
    def warm(self) -> dict[str, Any]:
        """Import and exercise what workers use (each child reseeds its random streams)."""
        started = time.monotonic()
        import numpy  # noqa: F401
        import torch

        from . import harness, main, protocol  # noqa: F401
        try:
            from . import recorders  # noqa: F401  (imported, never installed here)
        except ImportError:
            pass

        x = torch.arange(12, dtype=torch.float64).reshape(3, 4).div(7).requires_grad_(True)
        y = torch.softmax(x, dim=-1) @ x.T
        (g,) = torch.autograd.grad(y.sum(), x)
        x.grad = g.clone()
        torch.nn.utils.clip_grad_norm_([x], 1.0)
        torch.optim.Adam([x], lr=0.1).step()
        torch.optim.SGD([x], lr=0.1).step()
        torch.nn.functional.conv2d(torch.ones(1, 1, 5, 5), torch.ones(1, 1, 3, 3))
        torch.nn.functional.scaled_dot_product_attention(torch.ones(1, 2, 3), torch.ones(1, 2, 3), torch.ones(1, 2, 3))
        encoder = protocol.Encoder()
        header = {"value": encoder([x.detach(), torch.ones(2, dtype=torch.int64)])}
        import io

        buffer = io.BytesIO()
        protocol.write_frame(buffer, header, encoder.tensors)
        buffer.seek(0)
        decoded, tensors = protocol.read_frame(buffer)
        protocol.decode(decoded["value"], tensors)
        harness.function(lambda t: t * 2, {"t": torch.ones(2)}, ["t"], torch.ones(2), 1)
        try:
            import gymnasium

            env = gymnasium.make("FrozenLake-v1", desc=["SF", "HG"], is_slippery=False)
            env.reset(seed=0)
            env.step(1)
            env.close()
        except Exception:  # noqa: BLE001 - gymnasium is only needed by the RL exercise
            pass
        try:  # torchvision's models (seconds to import): built by the module_transform harness
            import torchvision.models  # noqa: F401
        except Exception:  # noqa: BLE001 - only needed by exercises that transform a model
            pass
        self._reset()  # whatever the warm-up wrote to /tmp
        # Everything imported so far is permanent: the children's garbage collector never walks it,
        # so it does not write to (and copy) the pages they share with us.
        gc.collect()
        gc.freeze()
        return {"ready": True, "seconds": round(time.monotonic() - started, 3),
                "threads": len(os.listdir("/proc/self/task"))}

    # --------------------------------------------------------------------------------- loop
    def serve(self) -> None:
        self.sock.send(json.dumps(self.warm()).encode())
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 8)
            except OSError:
                return
            if not data:
                return  # the grader is gone: PID 1 exits and the kernel ends the sandbox
            try:
                request = json.loads(data)
                op = request.get("op") if isinstance(request, dict) else None
                if op == "fork":
                    reply = self._fork(fds)
                    fds = []
                elif op == "wait":
                    reply = self._wait(int(request["pid"]), float(request.get("timeout", 0)))
                elif op == "reset":
                    reply = self._reset()
                elif op == "ping":
                    reply = {"ok": True}
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
            except Exception as exc:  # noqa: BLE001 - reported to the grader, which decides
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
            finally:
                for fd in fds:
                    os.close(fd)
            self.sock.send(json.dumps(reply).encode())

    # ------------------------------------------------------------------------------ children
    def _reap(self, *_: Any) -> None:
        """Collect every exited process (orphans of the sandbox are reparented to PID 1: us)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.statuses[pid] = os.waitstatus_to_exitcode(status)
                while len(self.statuses) > KEEP_STATUSES:
                    del self.statuses[next(iter(self.statuses))]

    def _fork(self, fds: list[int]) -> dict[str, Any]:
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return {"ok": False, "error": f"fork needs 3 descriptors, got {len(fds)}"}
        self._reap()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            return {"ok": False, "error": f"fork failed: {exc.strerror}"}
        if pid == 0:
            self._become_worker(*fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        return {"ok": True, "pid": pid}

    def _become_worker(self, request_fd: int, reply_fd: int, output_fd: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.setsid()
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            self.sock.detach()
            keep = {0, 1, 2, request_fd, reply_fd}
            for fd in _open_fds():
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            _libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # like a freshly started worker
            self._fresh_state()
            sys.argv = ["-c", str(request_fd), str(reply_fd)]
            from .main import main

            main(request_fd, reply_fd)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - the child must never return into the server loop
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _fresh_state(self) -> None:
        """Random streams as a newly started interpreter has them: torch and numpy seeded from the
        operating system's entropy, as at their import (``random`` is reseeded by CPython's own
        at-fork hook)."""
        import torch

        torch.seed()
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()

    def _wait(self, pid: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._reap()
            if pid in self.statuses:
                return {"ok": True, "status": self.statuses[pid]}
            if pid not in self.children:
                return {"ok": True, "status": None, "unknown": True}
            if time.monotonic() >= deadline:
                return {"ok": True, "status": None}
            time.sleep(0.01)

    # --------------------------------------------------------------------------------- reset
    def _reset(self) -> dict[str, Any]:
        deadline = time.monotonic() + RESET_DEADLINE
        while True:
            try:
                os.kill(-1, signal.SIGKILL)  # everyone in the namespace but PID 1, atomically w.r.t. fork
            except ProcessLookupError:
                pass
            self._reap()
            left = _other_pids()
            if not left:
                break
            if time.monotonic() > deadline:
                return {"ok": False, "error": f"processes survived: {left[:10]}"}
            time.sleep(0.002)
        problems = [p for root, mode in self.writable.items() for p in _empty(root, mode)] + _remove_ipc()
        changed = sorted(k for k, v in own_settings().items() if self.settings.get(k) != v)
        if changed:  # the filter forbids it; if it happened anyway, no later worker may inherit it
            problems.append(f"PID 1's {', '.join(changed)} changed")
        os.chdir(TMP)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process of the sandbox we reaped
        return {"ok": not problems, "error": "; ".join(problems)[:500], "cpu": usage.ru_utime + usage.ru_stime,
                "children_cpu": children.ru_utime + children.ru_stime}


def own_settings() -> dict[str, Any]:
    """This process's resource limits, priority and scheduling policy: what a fork inherits."""
    settings: dict[str, Any] = {name: resource.getrlimit(getattr(resource, name))
                                for name in dir(resource) if name.startswith("RLIMIT_")}
    settings["priority"] = os.getpriority(os.PRIO_PROCESS, 0)
    settings["scheduler"] = os.sched_getscheduler(0)
    return settings


def writable_mounts() -> list[str]:
    """Mount points the sandbox can write to, besides ``/proc``: its temporary file systems."""
    found = []
    with open("/proc/self/mounts") as table:
        for line in table:
            fields = line.split()
            if len(fields) >= 4 and fields[2] == "tmpfs" and "rw" in fields[3].split(","):
                found.append(fields[1].replace("\\040", " "))
    return found


MAX_WIPE_ENTRIES = 20_000  # more: the sandbox is discarded instead (the kernel frees a tmpfs at once)


def _empty(root: str, mode: int) -> list[str]:
    """Remove everything under ``root``, at any depth, without recursion (a 3000-deep chain of
    folders is fine) and holding two descriptors at a time (a submission may leave more folders
    than the descriptor limit); folders the submission made unreadable are given back first. A tree
    of more than MAX_WIPE_ENTRIES entries is not walked: the reset fails and the grader discards the
    whole sandbox, which is faster."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            os.chmod(root, mode)
        except PermissionError:
            pass  # a mount point the launcher prepared as root: its mode is already set
        fd = os.open(root, flags)
    except OSError as exc:
        return [f"cannot empty {root}: {exc}"]
    names: list[str] = []  # the path from root to fd, as names
    removed = 0
    try:
        while True:
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    removed += 1
                    if removed > MAX_WIPE_ENTRIES:
                        return [f"{root}: more than {MAX_WIPE_ENTRIES} entries left behind"]
                    if entry.is_dir(follow_symlinks=False):
                        child = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if child is not None:  # go down (made readable and writable first)
                os.chmod(child, 0o700, dir_fd=fd)
                below = os.open(child, flags, dir_fd=fd)
                os.close(fd)
                fd = below
                names.append(child)
                continue
            if not names:
                break
            above = os.open("..", flags, dir_fd=fd)  # nothing of the submission runs: ".." is stable
            os.close(fd)
            fd = above
            os.rmdir(names.pop(), dir_fd=fd)
    except OSError as exc:
        return [f"cannot empty {root}: {exc}"]
    finally:
        os.close(fd)
    left = os.listdir(root)
    return [f"{root} not empty: {left[:5]}"] if left else []


def _remove_ipc() -> list[str]:
    """Remove System V shared memory, message queues and semaphores of this IPC namespace."""
    tables = {"shm": "shmctl", "msg": "msgctl", "sem": "semctl"}
    found = {}
    for kind in tables:
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        ids = [int(row.split()[1]) for row in rows if len(row.split()) > 1]
        if ids:
            found[kind] = ids
    if not found:
        return []
    libc = _libc()
    problems = []
    for kind, ids in found.items():
        for ident in ids:
            if kind == "sem":
                result = libc.semctl(ident, 0, IPC_RMID, 0)
            else:
                result = getattr(libc, tables[kind])(ident, IPC_RMID, None)
            if result != 0:
                problems.append(f"cannot remove System V {kind} {ident}")
    return problems


def main(control_fd: int) -> None:
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Standard input is already /dev/null (descriptor 0, kept by the children, which replace sys.stdin
    # as a cold worker does); any other descriptor of ours is closed in every child.
    zygote = Zygote(control_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No handler for SIGCHLD (nor any other signal): as PID 1 of its namespace the zygote then never
    # sees the signals its sandbox sends it (a storm of SIGCHLD would otherwise run Python handlers
    # in the middle of a fork or a reset). Exited children are reaped synchronously, before every
    # fork, wait and reset.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    zygote.serve()


if __name__ == "__main__":
    main(int(sys.argv[1]))
