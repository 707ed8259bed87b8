"""Warm sandboxed workers: one fork server ("zygote") per sandbox slot, one forked worker per use.

A cold worker (``client.WorkerProcess`` on its own) starts bubblewrap and a Python that imports
torch for every submission: seconds of CPU before the first test. A :class:`Slot` starts that
sandbox once, with ``autograder/worker/zygote.py`` as its PID 1, which imports and warms torch and
then forks one worker per request. The worker is the same code as a cold one (``worker.main``) on
the same two pipes, in the same sandbox: same namespaces, uid (``61000 + slot`` when the grader is
root), resource limits (per process, so each child starts with its own CPU time) and seccomp
filter. The zygote's sandbox must have a read-only file system outside its temporary file
systems (``--remount-ro`` of ``/`` and ``/dev``, added if the cold sandbox lacks them), because it
outlives one submission.

Isolation between submissions, which share a slot one after the other:

- :meth:`Slot.reset` runs before and after every submission and whenever a worker is killed
  (timeout, crash): the zygote kills every other process of the sandbox (``kill(-1)`` from PID 1),
  reaps them, empties every writable file system (``/tmp``, ``/dev/shm``) and removes System V IPC
  objects; it reports failure if anything survives, and the grader then throws the sandbox away;
- nothing else is writable, the zygote's memory and descriptors are unreadable to the workers
  (not dumpable), and its signals are ignored (PID 1 of the namespace);
- if the zygote dies or stops answering, the slot is torn down (the namespace dies with it) and
  the next worker comes from a fresh sandbox: only the submission that caused it pays.

A slot is the *launcher* of ``client.StudentSession``: :meth:`Slot.start_worker` returns a
process-like :class:`ForkedWorker` and the two pipe ends, and a crash restart within a submission
is just another fork. One slot serves one submission at a time; N slots grade N in parallel.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, BinaryIO

from autograder.sandbox import bubblewrap as sandbox

ZYGOTE_CODE = (f"import sys; sys.path.insert(0, {sandbox.SANDBOX_WORKER_ROOT!r}); "
               "from worker.zygote import main; main(int(sys.argv[1]))")
START_TIMEOUT = 300.0  # seconds for a cold sandbox to import torch (a loaded machine is slow)
OP_TIMEOUT = 30.0
MAX_USES = 1000  # workers forked by one zygote before it is replaced by a fresh one
MAX_MESSAGE = 1 << 16




class SlotError(RuntimeError):
    """The slot's sandbox could not be started or stopped answering (a grader-side failure)."""


class ForkedWorker:
    """What ``WorkerProcess`` needs of a process (``pid``, ``stdout``, ``wait``), for a worker
    forked by a zygote; ``kill_tree`` kills it and everything else in its sandbox."""

    def __init__(self, slot: "Slot", generation: int, pid: int, stdout: BinaryIO) -> None:
        self.slot = slot
        self.generation = generation
        self.pid = pid  # in the sandbox's PID namespace
        self.stdout = stdout
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            status = self.slot._wait_child(self, 3600.0 if timeout is None else timeout)
            if status is None:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            self.returncode = status
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def kill_tree(self) -> None:
        self.slot._kill_all(self)

    def usage_root(self) -> int:
        """The process whose tree holds this worker's CPU time: the slot's sandbox (the worker's pid
        is in the sandbox's own PID namespace)."""
        return self.slot.proc.pid if self.slot.proc is not None else -1


class Slot:
    """One sandbox slot: a zygote started on first use and restarted whenever it fails."""

    def __init__(self, slot: int = 0, *, device: str = "cpu", limits: sandbox.Limits = sandbox.DEFAULT_LIMITS,
                 max_uses: int = MAX_USES) -> None:
        self.slot = slot
        self.device = device
        self.limits = limits
        self.max_uses = max_uses
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.log: Any = None  # session.OutputTail of the zygote's own output
        self.generation = 0
        self.uses = 0
        self.ready: dict[str, Any] | None = None
        self.starts = 0
        self.sandbox_cpu = 0.0  # CPU seconds used by the workers of this slot (all sandboxes so far)
        self.sandbox_cpu_base = 0.0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self) -> tuple[list[str], list[int]]:
        """The zygote's command line (the cold worker's sandbox, the zygote as its PID 1) and the
        descriptors it needs."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        env = (("CUDA_VISIBLE_DEVICES", visible),) if self.device == "cuda" and visible is not None else ()
        spec = sandbox.launch(sandbox.SandboxSpec(self.device, self.slot, self.limits, code=ZYGOTE_CODE,
                                             as_pid_1=True, env=env))  # the GPUs a scheduler gave
        cmd, fds = list(spec.command), list(spec.fds)
        return [*sandbox.cpu_share(self.slot), *cmd], fds

    def start(self) -> None:
        """Start the sandbox without waiting for torch to be imported in it (see :meth:`ensure`)."""
        with self._lock:
            if self.proc is not None:
                return
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            cmd, fds = self.command()
            try:
                self.proc = subprocess.Popen(
                    [*cmd, str(theirs.fileno())], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(), *fds), start_new_session=True)
            except OSError:
                ours.close()
                raise
            finally:
                theirs.close()
                for fd in fds:
                    os.close(fd)
            self.sock = ours
            from autograder.sandbox.session import OutputTail  # imports torch: after the sandbox has started importing its own

            self.log = OutputTail(self.proc.stdout)
            self.generation += 1
            self.starts += 1
            self.uses = 0
            self.ready = None

    def ensure(self) -> None:
        """A running, warmed-up zygote (started cold if there is none)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is not None:
                self._teardown("the zygote had ended")
            if self.proc is None:
                self.start()
            if self.ready is None:
                try:
                    reply = self._receive(START_TIMEOUT)
                except SlotError as exc:
                    raise SlotError(f"the sandbox of slot {self.slot} did not start: {exc}") from None
                if not reply.get("ready"):
                    self._teardown(f"the zygote did not start: {reply}")
                    raise SlotError(f"the sandbox of slot {self.slot} did not start: {reply}")
                self.ready = reply

    def reset(self) -> None:
        """Nothing of an earlier submission left in the slot: kill, wipe, or start afresh."""
        with self._lock:
            if self.proc is None:
                return
            try:
                self.ensure()
                reply = self._request({"op": "reset"}, timeout=OP_TIMEOUT)
            except SlotError as exc:
                self._teardown(f"reset failed: {exc}")
                return
            if isinstance(reply.get("children_cpu"), (int, float)) and isinstance(reply.get("cpu"), (int, float)):
                # the workers' CPU time, and the zygote's own (forking, resetting)
                self.sandbox_cpu = self.sandbox_cpu_base + float(reply["children_cpu"]) + float(reply["cpu"])
            if not reply.get("ok"):
                self._teardown(f"the sandbox could not be cleaned: {reply.get('error')}")
            elif self.uses >= self.max_uses or float(reply.get("cpu", 0)) > self.limits.cpu_seconds / 2:
                self._teardown("replaced by a fresh zygote (uses or CPU time)")

    def close(self) -> None:
        with self._lock:
            self._teardown()

    # --------------------------------------------------------------------- StudentSession hook
    def start_worker(self, device: str) -> tuple[ForkedWorker, BinaryIO, BinaryIO]:
        """Fork a worker on fresh pipes: (process, request stream, reply stream)."""
        with self._lock:
            if device != self.device:
                self._teardown()
                self.device = device
            for attempt in range(2):
                try:
                    return self._fork()
                except SlotError as exc:
                    self._teardown(f"could not fork a worker: {exc}")
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def _fork(self) -> tuple[ForkedWorker, BinaryIO, BinaryIO]:
        self.ensure()
        if self.uses >= self.max_uses:
            self._teardown("replaced by a fresh zygote (uses)")
            self.ensure()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            reply = self._request({"op": "fork"}, fds=(req_r, rep_w, out_w), timeout=OP_TIMEOUT)
        except BaseException:
            for fd in (req_w, rep_r, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
        if not reply.get("ok") or not isinstance(reply.get("pid"), int):
            for fd in (req_w, rep_r, out_r):
                os.close(fd)
            raise SlotError(f"the zygote could not fork: {reply.get('error')}")
        self.uses += 1
        worker = ForkedWorker(self, self.generation, reply["pid"], os.fdopen(out_r, "rb"))
        return worker, os.fdopen(req_w, "wb"), os.fdopen(rep_r, "rb")

    def _wait_child(self, worker: ForkedWorker, timeout: float) -> int | None:
        with self._lock:
            if worker.generation != self.generation or self.proc is None:
                return -signal.SIGKILL  # its sandbox is gone, and every process in it
            try:
                reply = self._request({"op": "wait", "pid": worker.pid, "timeout": timeout}, timeout=timeout + OP_TIMEOUT)
            except SlotError as exc:
                self._teardown(f"wait failed: {exc}")
                return -signal.SIGKILL
            status = reply.get("status")
            if isinstance(status, int):
                return status
            return -signal.SIGKILL if reply.get("unknown") else None

    def _kill_all(self, worker: ForkedWorker) -> None:
        with self._lock:
            if worker.generation != self.generation or self.proc is None:
                return
            self.reset()

    # ------------------------------------------------------------------------------ messaging
    def _request(self, message: dict[str, Any], fds: tuple[int, ...] = (), timeout: float = OP_TIMEOUT) -> dict[str, Any]:
        if self.sock is None:
            raise SlotError("no sandbox")
        data = json.dumps(message).encode()
        try:
            self.sock.settimeout(timeout)
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)
        except OSError as exc:
            raise SlotError(f"the zygote is gone ({exc})") from None
        return self._receive(timeout)

    def _receive(self, timeout: float) -> dict[str, Any]:
        if self.sock is None:
            raise SlotError("no sandbox")
        try:
            self.sock.settimeout(timeout)
            data = self.sock.recv(MAX_MESSAGE)
        except OSError as exc:  # timeouts included
            reason = f"the zygote stopped answering ({exc.__class__.__name__})"
            self._teardown(reason)
            raise SlotError(reason) from None
        try:
            reply = json.loads(data) if data else None
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            log, proc = self.log, self.proc
            if proc is not None:  # let its last words (bubblewrap's error, a traceback) arrive
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if log is not None:
                log.thread.join(2)
            output = log.text()[-500:] if log is not None else ""
            reason = f"the zygote ended (output: {output!r})"
            self._teardown(reason)
            raise SlotError(reason)
        return reply

    def _teardown(self, reason: str = "") -> None:
        """Kill the sandbox (and so every process in it), and wait until they are all gone: the
        next sandbox of this slot runs as the same uid, whose process limit they would count in."""
        proc, sock = self.proc, self.sock
        self.proc = self.sock = None
        self.ready = None
        self.sandbox_cpu_base = self.sandbox_cpu  # the next sandbox counts from zero
        if reason and proc is not None:
            sys.stderr.write(f"autograder: slot {self.slot}: sandbox discarded: {reason}\n")
        if sock is not None:
            sock.close()
        if proc is not None:
            inits = sandbox.children(proc.pid) if proc.poll() is None else []
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            sandbox.wait_gone(inits, timeout=10)
        self.generation += 1

