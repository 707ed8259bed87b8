"""Grader-side handle on one submission's sandboxed worker.

The hidden suites talk to the student's code only through :class:`StudentSession`. Every call
sends data (tensors as safetensors, the rest as JSON) to the worker, which runs the student's
function inside the sandbox through a named *harness* (``autograder/worker/harness.py``) and sends
back data. Nothing the worker returns is ever executed or unpickled here.

How each exercise is called is its calling convention, declared with the exercise
(``autograder/course/conventions.py``, which documents each one): :meth:`StudentSession.vjp` for a
``Function``, :meth:`StudentSession.run` for the others. A tensor the student returned that could
not be sent (e.g. a subclass) arrives as ``protocol.Bad``.

Errors of the student's code raise :class:`StudentError`; the session restarts a dead worker on
the next call, so one crash costs only the call that caused it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from autograder.errors import GraderError, OutcomeKind
from autograder import limits as bounds
from autograder.safeio import exception_summary, gradient_note, scrub
from autograder.course import registry
from autograder.sandbox import bubblewrap as sandbox
from autograder.worker import protocol

#: The kinds of failure the worker reports of the student's function (any other reply: ``EXCEPTION``).
WORKER_KINDS = (OutcomeKind.EXCEPTION, OutcomeKind.NOT_IMPLEMENTED, OutcomeKind.MISSING)


class StudentError(Exception):
    """The student's code failed (raised, was missing, hung, crashed or broke the protocol).

    ``message`` is one line, safe to show the student (it names the exception type and the
    student's own line, never hidden inputs)."""

    def __init__(self, kind: OutcomeKind, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = OutcomeKind(kind)  # one of the first six kinds
        self.message = message
        self.detail = detail  # the student's traceback (their own code only), for the report


def _plain_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """A tensor's facts as the worker reported them, typed; the autograd node's name is the
    student's to choose (a custom Function), so only whether there is one is kept."""
    writes = facts.get("writes")
    return {"writes": writes if type(writes) is int and writes >= 0 else 0,
            "grad_fn": None if facts.get("grad_fn") is None else "an autograd node",
            "requires_grad": facts.get("requires_grad") is True}


@dataclass
class Call:
    output: Any  # Tensor | float | int | bool | None | list | Bad
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    grad_error: str | None = None  # why gradients could not be computed, if they could not


@dataclass
class VJPResult:
    calls: list[Call]
    inputs_after: dict[str, torch.Tensor]  # tensor arguments as they were after the first call
    forbidden: list[str] = field(default_factory=list)
    #: per tensor argument, what the first call did to it: ``{"writes": int (in-place writes),
    #: "grad_fn": str | None (the autograd node it now hangs from), "requires_grad": bool}``
    input_facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def no_history(self, name: str) -> bool:
        """Input ``name`` records no autograd history after the call (a fact the grader derives)."""
        facts = self.input_facts.get(name)
        return isinstance(facts, dict) and "grad_fn" in facts and facts["grad_fn"] is None

    @property
    def output(self) -> Any:
        return self.calls[0].output

    @property
    def grads(self) -> dict[str, torch.Tensor | None]:
        return self.calls[0].grads

    @property
    def grad_error(self) -> str | None:
        return self.calls[0].grad_error


@dataclass
class Cell:
    """One cell of student code to execute in the worker, already plain Python."""

    source: str
    label: str  # "cell 7": how the student finds it in their notebook


@dataclass
class LoadProblem:
    label: str
    message: str


class OutputTail:
    """Drains a stream in a thread, keeping only its last ``limit`` bytes (output floods are cheap)."""

    def __init__(self, stream, limit: int = 8192) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        while chunk := stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16):
            self.total += len(chunk)
            self.data += chunk
            if len(self.data) > 2 * self.limit:
                del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit:]).decode(errors="replace")


def machine_starved(cpu: float, waited: float, wall: float) -> bool:
    """Whether a call that ran past the wall-clock backstop was held back by the machine: its
    sandbox spent most of the time runnable but waiting for a CPU, with about one runnable task
    (running plus waiting adds up to at most 1.5 x the wall clock). Code that sleeps or blocks
    waits little; code that runs many threads or processes of its own waits for itself (the sum
    exceeds the wall clock): both are the submission's doing."""
    return waited > max(1.0, (wall - cpu) / 2) and cpu + waited <= 1.5 * wall


class MachineBusy(GraderError):
    """A call was cut short by the machine's load, not by the submission's code (see
    :meth:`WorkerProcess.request`): retried once, then a grader error, never a timeout."""


class ColdProcess:
    """A worker in a cold sandbox of its own, with the interface ``WorkerProcess`` uses of any
    worker (that of ``forkserver.ForkedWorker``): ``stdout``, ``wait``, ``poll``, ``kill_tree``
    and ``usage_root``."""

    def __init__(self, popen: subprocess.Popen, sandboxed: bool) -> None:
        self.popen = popen
        self.sandboxed = sandboxed
        self.pid = popen.pid
        self.stdout = popen.stdout

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout=timeout)

    def poll(self) -> int | None:
        return self.popen.poll()

    def usage_root(self) -> int:
        return self.popen.pid

    def kill_tree(self) -> None:
        # The sandbox's PID 1 first: the kernel then kills everything in its PID namespace, and
        # bubblewrap (its parent) reaps it, so that nothing is orphaned to the machine's init.
        inits = sandbox.kill_sandbox(self.popen.pid) if self.sandboxed and self.popen.poll() is None else []
        try:
            os.killpg(self.popen.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        sandbox.wait_gone(inits)  # the sandbox's PID 1 gone: every process it held is gone


class ColdLauncher:
    """Starts each worker in a fresh sandbox (or, unofficially, a plain process) on its own pipes;
    the other launcher is ``forkserver.Slot`` (workers forked by a warm zygote)."""

    def __init__(self, *, sandboxed: bool, slot: int = 0, limits: sandbox.Limits = sandbox.DEFAULT_LIMITS) -> None:
        self.sandboxed = sandboxed
        self.slot = slot
        self.limits = limits

    def start_worker(self, device: str) -> tuple[ColdProcess, Any, Any]:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        spec = (sandbox.launch(sandbox.SandboxSpec(device, self.slot, self.limits)) if self.sandboxed
                else sandbox.Launch(sandbox.plain_command(self.limits)))
        share = sandbox.cpu_share(self.slot) if self.sandboxed else []  # the slot's CPU, as a warm sandbox has
        try:
            popen = subprocess.Popen(
                [*share, *spec.command, str(req_r), str(rep_w)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, pass_fds=(req_r, rep_w, *spec.fds), start_new_session=True)
        except BaseException:
            os.close(req_w)
            os.close(rep_r)
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
            spec.close()
        return ColdProcess(popen, self.sandboxed), os.fdopen(req_w, "wb"), os.fdopen(rep_r, "rb")


class WorkerProcess:
    """One worker process and its two pipes."""

    POLL_S = 0.25  # how often a running call's CPU time is read
    WALL_FACTOR = 3  # wall-clock backstop: WALL_FACTOR x the CPU-time limit + WALL_EXTRA_S
    WALL_EXTRA_S = 30.0
    #: A call starved of CPU by other load may run until STARVED_FACTOR x the limit + WALL_EXTRA_S
    #: (a tenth of a CPU) before the machine is blamed: enough for a busy loop to be judged.
    STARVED_FACTOR = 10

    def __init__(self, *, sandboxed: bool, device: str, slot: int = 0,
                 limits: sandbox.Limits = sandbox.DEFAULT_LIMITS, launcher: Any = None) -> None:
        # Where the worker comes from: a warm zygote's fork (``forkserver.Slot``) or a cold sandbox
        # of its own (:class:`ColdLauncher`); both give a process with the same interface.
        self.launcher = launcher if launcher is not None else ColdLauncher(sandboxed=sandboxed, slot=slot, limits=limits)
        self.proc, self.requests, self.replies = self.launcher.start_worker(device)
        self.output = OutputTail(self.proc.stdout)
        self.dead: str | None = None

    def request(self, header: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
                timeout: float, *, deadline: float | None = None,
                cpu_left: float | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Send one request and wait for its reply; raises StudentError on death or timeout.

        ``deadline`` (``time.monotonic()``) and ``cpu_left`` (CPU seconds) are what is left of the
        submission's budgets: past either, the call is stopped like a timeout. The CPU seconds the
        call used are left in ``self.last_cpu``."""
        if self.dead:
            raise StudentError(OutcomeKind.CRASHED, self.dead)
        header = {**header, "id": secrets.token_hex(8)}
        box: dict[str, Any] = {}

        def exchange() -> None:
            try:
                protocol.write_frame(self.requests, header, tensors)
                while True:  # skip anything that is not the reply to this request
                    # Sizes checked (and charged to the submission) before a byte of data is read.
                    reply, reply_tensors = protocol.read_frame(
                        self.replies, max_header=bounds.MAX_REPLY_HEADER_BYTES, max_payload=bounds.MAX_REPLY_BYTES,
                        budget=getattr(self, "budget", None))
                    if reply.get("id") == header["id"]:
                        box["reply"] = (reply, reply_tensors)
                        return
            except BaseException as exc:  # noqa: BLE001 - reported below
                box["error"] = exc

        thread = threading.Thread(target=exchange, daemon=True)
        self.last_cpu = 0.0
        started = time.monotonic()
        cpu_before, wait_before = self.usage()
        thread.start()
        thread.join(min(timeout, self.POLL_S))
        while thread.is_alive():
            # ``timeout`` judges the submission by the CPU time it used (its own processes and
            # threads), not by the wall clock, which a loaded machine stretches. The wall clock is
            # only a generous backstop for code that sleeps or blocks.
            cpu, waited = self.usage()
            cpu -= cpu_before
            waited -= wait_before
            wall = time.monotonic() - started
            self.last_cpu = cpu
            if cpu > timeout:
                self.kill(f"used more than {timeout:g} s of CPU time and was stopped")
                thread.join(5)
                raise StudentError(OutcomeKind.TIMEOUT, self.dead or "timed out")
            if (deadline is not None and time.monotonic() > deadline) or (cpu_left is not None and cpu > cpu_left):
                self.kill("stopped: the submission's time budget ran out")
                thread.join(5)
                raise StudentError(OutcomeKind.TIMEOUT, self.dead or "timed out")
            if wall > self.WALL_FACTOR * timeout + self.WALL_EXTRA_S:
                if machine_starved(cpu, waited, wall):
                    # Runnable but not running: other load on the machine, not this code. The call
                    # keeps its chance to reach the CPU-time limit (a busy loop is still the
                    # student's timeout) until the machine is too slow to judge it at all.
                    if wall <= self.STARVED_FACTOR * timeout + self.WALL_EXTRA_S:
                        thread.join(self.POLL_S)
                        continue
                    self.kill("stopped: the machine was too busy")
                    thread.join(5)
                    raise MachineBusy(f"a call was slowed down by the machine's load ({wall:.0f} s wall clock, "
                                      f"{cpu:.1f} s of CPU, {waited:.0f} s waiting for a CPU)")
                self.kill(f"did not finish within {wall:.0f} s (it waited or slept, using {cpu:.1f} s of CPU) "
                          "and was stopped")
                thread.join(5)
                raise StudentError(OutcomeKind.TIMEOUT, self.dead or "timed out")
            thread.join(self.POLL_S)
        if "reply" in box:
            return box["reply"]
        error = box.get("error")
        if isinstance(error, protocol.ProtocolError):
            self.kill(f"the worker's reply was malformed ({error})")
            raise StudentError(OutcomeKind.PROTOCOL, self.dead or "malformed reply")
        self.kill(self._death_reason())
        raise StudentError(OutcomeKind.CRASHED, self.dead or "the worker ended")

    def usage(self) -> tuple[float, float]:
        """(CPU seconds, seconds waiting for a CPU) of this worker's sandbox so far."""
        return sandbox.tree_usage(self.proc.usage_root())

    def _death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the worker stopped answering"
        if code < 0:
            import signal

            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = {"SIGKILL": " (killed: memory, CPU-time or process limit?)", "SIGXCPU": " (CPU time limit)",
                    "SIGXFSZ": " (file size limit)", "SIGSEGV": " (segmentation fault)"}.get(name, "")
            return f"the process running the notebook's code was killed by {name}{hint}"
        return f"the process running the notebook's code exited with status {code}"

    def kill(self, reason: str) -> None:
        if self.dead is None:
            self.dead = reason
        self.proc.kill_tree()  # the worker and every process of its sandbox
        self._close_and_reap()

    def _close_and_reap(self) -> None:
        for stream in (self.requests, self.replies):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.kill("closed")


class StudentSession:
    """One submission's code, loaded in a (sandboxed) worker, callable by name.

    ``cells`` are executed in order at start-up (and again after a crash, minus any cell that
    killed or hung the worker). Calls that crash or time out twice for the same function are not
    retried: the remaining tests of that exercise fail with the same reason.
    """

    MAX_STRIKES = 2
    MAX_RESTARTS = 10
    START_ATTEMPTS = 4  # a worker that cannot start is retried (the machine may be briefly out of resources)
    START_BACKOFF_S = 1.0

    def __init__(self, cells: Sequence[Cell], *, sandboxed: bool = True, device: str = "cpu",
                 forbidden: dict[str, dict[str, list[str]]] | None = None, sentinels: Sequence[str] = (),
                 slot: int = 0, call_timeout: float = 10.0, load_timeout: float = 60.0,
                 limits: sandbox.Limits = sandbox.DEFAULT_LIMITS, launcher: Any = None,
                 full_messages: bool = False, budget_s: float | None = None) -> None:
        self.cells = list(cells)
        # One wall-clock budget for the whole submission: loading, restarts and every call. Once it
        # is spent, nothing more runs and every later call fails with a clear message.
        self.budget_s = float(budget_s if budget_s is not None else bounds.SUBMISSION_SECONDS)
        self.deadline: float | None = None  # set when the first worker starts
        self.cpu_budget_s = float(bounds.SUBMISSION_CPU_SECONDS)  # CPU of every process of the submission
        self.cpu_used = 0.0
        self.out_of_time = False
        self.full_messages = full_messages  # True only for the self-check (public inputs)
        self.reply_budget = protocol.Budget(bounds.MAX_SUBMISSION_REPLY_BYTES)  # all replies of the submission
        self.launcher = launcher  # where workers come from; None: a cold sandbox per worker
        self.sandboxed = sandboxed
        self.device = "cuda" if device == "cuda" else "cpu"
        self.worker_device = device
        self.setup_header = {"op": "setup", "forbidden": forbidden or {}, "sentinels": list(sentinels)}
        self.slot = slot
        self.call_timeout = call_timeout
        self.load_timeout = load_timeout
        self.limits = limits
        self.skipped: dict[int, str] = {}  # cell index -> why it is no longer executed
        self.load_problems: list[LoadProblem] = []
        self.strikes: dict[str, list[str]] = {}
        self.restarts = 0
        self._forbidden: dict[str, list[str]] = {}
        self.worker: WorkerProcess | None = None

    # ------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "StudentSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def remaining(self) -> float:
        """Seconds left of the submission's budget (the clock starts with the first worker)."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.budget_s
        return self.deadline - time.monotonic()

    def _malformed(self, function: str, message: str) -> StudentError:
        """A reply of the wrong shape: the student's process wrote on the channel (the stream may be
        out of step), so the worker is replaced, and the call counts as a strike like a crash."""
        if self.worker is not None:
            self.worker.kill(message)
        self.strikes.setdefault(function, []).append(message)
        return StudentError(OutcomeKind.PROTOCOL, message)

    def _spent(self) -> bool:
        return self.remaining() <= 0 or self.cpu_used >= self.cpu_budget_s

    def _out_of_time(self, what: str) -> StudentError:
        self.out_of_time = True
        return StudentError(OutcomeKind.TIMEOUT, f"{what}: the submission used up its time budget "
                            f"({self.budget_s:g} s of wall clock, {self.cpu_budget_s:g} s of CPU)")

    def _ask(self, worker: WorkerProcess, header: dict[str, Any], tensors: dict[str, torch.Tensor] | None,
             timeout: float) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """One request within what is left of the submission's budgets (wall clock and CPU)."""
        self.remaining()  # starts the clock
        try:
            return worker.request(header, tensors, timeout, deadline=self.deadline,
                                  cpu_left=max(0.0, self.cpu_budget_s - self.cpu_used))
        finally:
            self.cpu_used += float(getattr(worker, "last_cpu", 0.0) or 0.0)

    def start(self) -> None:
        """Start the worker and load the student's cells (idempotent while it is alive)."""
        while self.worker is None or self.worker.dead:
            if self._spent():
                raise self._out_of_time("not run")
            if self.restarts > self.MAX_RESTARTS:
                raise StudentError(OutcomeKind.CRASHED, "the notebook's code crashed the worker too many times; gave up")
            self.restarts += 1
            worker = self._fresh_worker()
            self.worker = worker
            worker.budget = self.reply_budget  # type: ignore[attr-defined]
            problems = []
            for index, cell in enumerate(self.cells):
                if index in self.skipped:
                    continue
                if self._spent():
                    worker.kill("the submission's time budget is used up")
                    raise self._out_of_time(f"{cell.label} and later cells not run")
                try:
                    reply, _ = self._ask(worker, {"op": "exec", "source": cell.source, "filename": f"<{cell.label}>"},
                                         None, self.load_timeout)
                except StudentError as exc:
                    if self._spent():
                        raise self._out_of_time(f"{cell.label} and later cells not run") from None
                    self.skipped[index] = f"{cell.label}: {exc.message}; the cell was skipped"
                    break
                if not reply.get("ok"):
                    error = reply.get("error") or {}
                    # Loading runs before any hidden input reaches this process (a restarted worker
                    # starts from an empty /tmp and nothing else is writable or persists), so the
                    # student's own message is shown, on one line.
                    problems.append(LoadProblem(cell.label, " ".join(str(error.get("message", "failed")).split())[:400]))
            else:
                self.load_problems = problems

    def reset_budgets(self) -> None:
        """Fresh submission budgets (wall clock, CPU, reply bytes): the seed-robustness test grades
        many implementations, each under many seeds, as separate submissions on one warm worker."""
        self.deadline = None
        self.cpu_used = 0.0
        self.out_of_time = False
        self.restarts = 0 if self.worker is None or self.worker.dead else 1
        self.reply_budget = protocol.Budget(bounds.MAX_SUBMISSION_REPLY_BYTES)
        if self.worker is not None:  # the live worker charges its replies to the new budget
            self.worker.budget = self.reply_budget  # type: ignore[attr-defined]

    def rebind(self, function: str, source: str) -> None:
        """Run ``source`` (typically ``function = other_definition``) in the live worker and keep it
        as the last cell (re-run after a restart), forgetting ``function``'s strikes and recorded
        forbidden calls: one warm worker then grades many implementations in turn (the project's
        seed-robustness test)."""
        cell = Cell(source, f"rebinding of {function}")
        self.cells = [c for c in self.cells if c.label != cell.label] + [cell]
        self.strikes.pop(function, None)
        self._forbidden.pop(function, None)
        if self.worker is not None and not self.worker.dead:
            reply, _ = self.worker.request({"op": "exec", "source": source, "filename": f"<{cell.label}>"},
                                           None, self.load_timeout)
            if not reply.get("ok"):
                raise StudentError(OutcomeKind.EXCEPTION, str((reply.get("error") or {}).get("message", "failed")))

    def _fresh_worker(self) -> WorkerProcess:
        """A started worker that has answered its set-up request. No student code has run yet, so
        any failure up to here is the machine's or the grader's (a sandbox that cannot get a
        process or a namespace, a zygote that died): retried with a pause, then a GraderError."""
        reason = ""
        for attempt in range(self.START_ATTEMPTS):
            if attempt:
                time.sleep(self.START_BACKOFF_S * 2 ** (attempt - 1))
            try:
                worker = WorkerProcess(sandboxed=self.sandboxed, device=self.worker_device, slot=self.slot,
                                       limits=self.limits, launcher=self.launcher)
            except (OSError, RuntimeError) as exc:  # fork/exec failed; forkserver.SlotError is a RuntimeError
                reason = f"{type(exc).__name__}: {exc}"
                continue
            try:
                worker.request(self.setup_header, None, self.load_timeout)
                return worker
            except MachineBusy as exc:
                reason = exc.message
            except StudentError as exc:
                worker.kill(exc.message)
                worker.output.thread.join(2)
                lines = [line for line in worker.output.text().splitlines() if line.strip()]
                reason = f"{exc.message}" + (f" ({lines[-1].strip()[:200]})" if lines else "")
        raise GraderError(f"the sandboxed worker could not start after {self.START_ATTEMPTS} attempts: {reason}")

    def _student_text(self, message: Any) -> str:
        """An exception message of the student's code, as the report may show it: official grading
        shows only its type and cell (the text could carry hidden inputs out); the self-check, on
        public inputs, the message itself (scrubbed of control characters, one line)."""
        if self.full_messages:
            return " ".join(str(message).split())[:400]
        return exception_summary(message, [c.label for c in self.cells])

    # ------------------------------------------------------------------------------ calls
    def _call(self, header: dict[str, Any], tensors: dict[str, torch.Tensor], timeout: float | None) -> Any:
        function = header["function"]
        strikes = self.strikes.get(function, [])
        if len(strikes) >= self.MAX_STRIKES:
            raise StudentError(OutcomeKind.CRASHED if "timeout" not in strikes[-1] else OutcomeKind.TIMEOUT,
                               f"not run again: {strikes[-1]}")
        if self._spent():
            raise self._out_of_time(f"`{function}` not called")
        if self.reply_budget.left <= 0:
            raise StudentError(OutcomeKind.PROTOCOL, f"`{function}` not called: the worker's replies exceeded "
                               f"{self.reply_budget.total >> 20} MiB for this submission")
        self.start()
        assert self.worker is not None
        try:
            try:
                reply, reply_tensors = self._ask(self.worker, header, tensors, timeout or self.call_timeout)
            except MachineBusy:  # once more on a fresh worker; a second time is a grader error
                self.start()
                reply, reply_tensors = self._ask(self.worker, header, tensors, timeout or self.call_timeout)
        except StudentError as exc:
            if self._spent():
                raise self._out_of_time(f"`{function}` stopped") from None
            self.strikes.setdefault(function, []).append(
                ("timeout: " if exc.kind == OutcomeKind.TIMEOUT else "") + exc.message)
            raise StudentError(exc.kind, f"`{function}` {exc.message}") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else None
            error = error if isinstance(error, dict) else {}
            kind = OutcomeKind(error["kind"]) if error.get("kind") in WORKER_KINDS else OutcomeKind.EXCEPTION
            if kind == OutcomeKind.MISSING:  # said by the grader, not in the worker's words
                raise StudentError(kind, f"`{function}` is not defined in the notebook (or is not a function)")
            message = error.get("message", "failed")
            if header.get("device") == "meta" and not self.full_messages:
                # data-less inputs: no hidden value to carry, and the suites read why a meta run was
                # inconclusive ("cannot be called on meta tensors"); numbers and quotes still go
                raise StudentError(kind, scrub(message))
            raise StudentError(kind, self._student_text(message))
        hits = reply.get("forbidden") or []
        if hits:
            known = self._forbidden.setdefault(function, [])
            known.extend(str(h)[:200] for h in hits[:20] if str(h)[:200] not in known)
        try:
            return protocol.decode(reply.get("value"), reply_tensors)
        except Exception as exc:  # noqa: BLE001 - decoding reads only the reply: whatever fails, the reply did
            raise self._malformed(function, "the worker's reply was malformed "
                                            f"(a value that could not be read: {type(exc).__name__})") from None

    def vjp(self, function: str, args: dict[str, Any], *, grad_wrt: Sequence[str] = (),
            upstream: torch.Tensor | None = None, device: str | None = None, repeat: int = 1,
            timeout: float | None = None, layouts: dict[str, str] | None = None) -> VJPResult:
        """Call ``function(*args.values())`` in the worker; with ``upstream``, also return the
        vector-Jacobian product ``upstream · d output / d input`` for each input in ``grad_wrt``.

        Tensors are materialised in the worker on ``device`` (``"meta"``: data-less, same shape and
        dtype); each call gets fresh copies. ``repeat`` calls the function that many times (one
        :class:`Call` each, e.g. for dropout statistics). ``layouts`` makes named inputs
        non-contiguous leaves with the same values: ``"transposed"`` (last two dimensions' strides
        swapped) or ``"strided"`` (every other element of a larger storage).

        An input the exercise updates in place (e.g. running statistics) is an ordinary argument:
        the caller's tensor after the first call comes back in ``inputs_after``, and what the call
        did to it (in-place writes, autograd history) in ``input_facts``.
        """
        encoder = protocol.Encoder()
        header = {"op": "call", "harness": "function", "function": function,
                  "args": {k: encoder(v) for k, v in args.items()}, "grad_wrt": list(grad_wrt),
                  "upstream": encoder(upstream), "repeat": int(repeat), "device": device or self.device,
                  "layouts": dict(layouts or {}),
                  "signature": registry.BY_NAME[function].parameters() if function in registry.BY_NAME else []}
        value = self._call(header, encoder.tensors, timeout)
        if not isinstance(value, dict) or not isinstance(value.get("calls"), list):
            raise self._malformed(function, "the worker's reply was malformed")
        calls = []
        for entry in value["calls"]:
            entry = entry if isinstance(entry, dict) else {}
            grads = entry.get("grads") if isinstance(entry.get("grads"), dict) else {}
            if not all(g is None or type(g) is torch.Tensor for g in grads.values()):
                raise self._malformed(function, "the worker's reply was malformed (a gradient that is not a tensor)")
            calls.append(Call(output=entry.get("output"), grads=grads,
                              grad_error=gradient_note(entry["grad_error"]) if isinstance(entry.get("grad_error"), str) else None))
        if len(calls) != max(1, repeat):
            raise self._malformed(function, "the worker's reply was malformed")
        inputs_after = value.get("inputs_after") if isinstance(value.get("inputs_after"), dict) else {}
        inputs_after = {k: v for k, v in inputs_after.items() if k in args and type(v) is torch.Tensor}
        facts = value.get("input_facts") if isinstance(value.get("input_facts"), dict) else {}
        facts = {str(k): _plain_facts(v) for k, v in facts.items() if k in args and isinstance(v, dict)}
        return VJPResult(calls=calls, inputs_after=inputs_after, forbidden=list(self._forbidden.get(function, [])),
                         input_facts=facts)

    def run(self, function: str, args: dict[str, Any], *, how: str | None = None, device: str | None = None,
            timeout: float | None = None) -> dict[str, Any]:
        """Call exercise ``function`` the way its calling convention says (``Exercise.call``, or the
        convention of ``Exercise.also`` whose harness is ``how``). The worker's harness replies with
        data; the convention's ``facts`` derive, here in the grader, every fact a score depends on
        (see ``autograder/course/conventions.py``)."""
        convention = registry.BY_NAME[function].convention(how)
        signature = registry.BY_NAME[function].parameters()
        encoder = protocol.Encoder()
        header = {"op": "call", "harness": convention.harness, "convention": convention.spec(signature),
                  "function": function, "args": {k: encoder(v) for k, v in args.items()},
                  "device": device or self.device}
        value = self._call(header, encoder.tensors, timeout)
        problem = "not a dict" if not isinstance(value, dict) else reply_problem(convention, value, args)
        if problem:  # the student's process wrote it: a malformed reply fails this call, nothing else
            raise self._malformed(function, f"the worker's reply was malformed ({problem})")
        return convention.facts(value, args)

    @property
    def forbidden(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._forbidden.items()}


# ------------------------------------------------------------------------------ reply schemas
# What each harness's reply must look like before a suite sees it: the worker is the student's
# process, so a reply may be of any shape. Lists must have exactly the lengths the request implies
# (a short list must never make a suite's ``zip`` compare nothing), tensors must be plain tensors.
# ``returned`` values are the student's return values and may be anything (the suites judge them).

def _tensor(v: Any) -> bool:
    return type(v) is torch.Tensor


def _tensors(v: Any, n: int, none: bool = False) -> bool:
    return isinstance(v, list) and len(v) == n and all(_tensor(x) or (none and x is None) for x in v)


def _identities(v: Any, n: int) -> bool:
    """``n`` identities read back by the worker: ``[id, data_ptr]`` int pairs, or None (no tensor)."""
    return isinstance(v, list) and len(v) == n and all(
        x is None or (isinstance(x, list) and len(x) == 2 and all(type(i) is int for i in x)) for x in v)


def _grads_in_place_problem(convention: Any, v: dict[str, Any], args: dict[str, Any]) -> str | None:
    steps, n = len(args["steps"]), len(args[convention.params])
    if not (isinstance(v.get("returned"), list) and len(v["returned"]) == steps):
        return "returned"
    if not (isinstance(v.get("grads"), list) and len(v["grads"]) == steps and all(_tensors(g, n, True) for g in v["grads"])):
        return "grads"
    if not _tensors(v.get("params_after"), n):
        return "params_after"
    for key in ("grad_identity_before", "grad_identity_after"):
        if not (isinstance(v.get(key), list) and len(v[key]) == steps and all(_identities(x, n) for x in v[key])):
            return key
    return None


def _optimizer_state_problem(convention: Any, v: dict[str, Any], args: dict[str, Any]) -> str | None:
    steps, n, size = len(args["steps"]), len(args[convention.params]), len(convention.state_names())
    if not (isinstance(v.get("params"), list) and len(v["params"]) == steps and all(_tensors(p, n) for p in v["params"])):
        return "params"
    if not (isinstance(v.get("states"), list) and len(v["states"]) == n and all(_tensors(s, size) for s in v["states"])):
        return "states"
    if not (isinstance(v.get("returned"), list) and len(v["returned"]) == steps):
        return "returned"
    for key in ("grads_after", "grads"):
        if not (isinstance(v.get(key), list) and len(v[key]) == steps and all(_tensors(g, n, True) for g in v[key])):
            return key
    for key in ("identity_before", "identity_after", "identities_before", "identities_after"):
        if not _identities(v.get(key), n + n * size):
            return key
    return None


def _table_update_problem(convention: Any, v: dict[str, Any], args: dict[str, Any]) -> str | None:
    if "returned" not in v:
        return "returned"
    if not _tensor(v.get(f"{convention.table}_after")):
        return f"{convention.table}_after"
    for key in ("identity_before", "identity_after"):
        if not _identities([v.get(key)], 1):
            return key
    return None


def _episode_loop_problem(convention: Any, v: dict[str, Any], args: dict[str, Any]) -> str | None:
    if not _tensor(v.get(convention.table)):
        return convention.table
    t = v.get("transitions")
    most = int(args["episodes"]) * int(args["max_steps"])  # the grader's loop cannot make more
    if not (_tensor(t) and t.dim() == 2 and t.shape[1] == 6 and t.shape[0] <= most):
        return "transitions"
    return None


def _tensor_dict(v: Any, names: set, none: bool = False) -> bool:
    """A dict of exactly the keys ``names``, each a tensor (or None)."""
    return isinstance(v, dict) and set(v) == names and all(_tensor(x) or (none and x is None) for x in v.values())


def _recurrent_cell_problem(convention: Any, v: dict[str, Any], args: dict[str, Any]) -> str | None:
    steps, n, names = len(args["xs"]), len(args["state"]), set(args["params"])
    if not (isinstance(v.get("outputs"), list) and len(v["outputs"]) == steps):
        return "outputs"
    after = v.get("inputs_after")
    if not (isinstance(after, dict) and _tensors(after.get("xs"), steps) and _tensors(after.get("state"), n)
            and _tensor_dict(after.get("params"), names)):
        return "inputs_after"
    grads, error = v.get("grads"), v.get("grad_error")
    if not (error is None or type(error) is str):
        return "grad_error"
    if grads is not None and not (isinstance(grads, dict) and _tensors(grads.get("xs"), steps, True)
                                  and _tensors(grads.get("state"), n, True)
                                  and _tensor_dict(grads.get("params"), names, True)):
        return "grads"
    if args.get("upstream") is None:
        if grads is not None or error is not None:  # no gradients are taken without upstream
            return "grads"
    elif (grads is None) == (error is None):  # with upstream: the gradients, or why not
        return "grads"
    return None


#: The dtypes a parameter may be reported in: torch's own names, never free text.
_DTYPE_NAMES = frozenset(str(d).removeprefix("torch.") for d in vars(torch).values() if isinstance(d, torch.dtype))


def _device_type(v: Any) -> bool:
    try:
        return type(v) is str and torch.device(v).type == v and torch.device(v).index is None
    except (RuntimeError, ValueError):
        return False


def _is_model_table(v: Any) -> bool:
    """``{"modules": [[name, type, id], ...], "parameters": [row, ...]}`` as ``module_transform`` reads them."""
    if not (isinstance(v, dict) and isinstance(v.get("modules"), list) and isinstance(v.get("parameters"), list)):
        return False
    if not all(isinstance(m, list) and len(m) == 3 and type(m[0]) is str and type(m[1]) is str and type(m[2]) is int
               for m in v["modules"]):
        return False
    return all(isinstance(r, dict) and type(r.get("name")) is str and type(r.get("id")) is int
               and type(r.get("type")) is str and isinstance(r.get("shape"), list)
               and all(type(d) is int and d >= 0 for d in r["shape"]) and r.get("dtype") in _DTYPE_NAMES
               and _device_type(r.get("device")) and type(r.get("requires_grad")) is bool
               and all(r.get(k) is None or _tensor(r[k]) for k in ("sample", "value")) for r in v["parameters"])


def _module_transform_problem(convention: Any, v: dict[str, Any], args: dict[str, Any]) -> str | None:
    for key in ("model_id", "returned_id"):
        if type(v.get(key)) is not int:
            return key
    if type(v.get("returned_type")) is not str:
        return "returned_type"
    for key in ("before", "after"):
        if not _is_model_table(v.get(key)):
            return key
    if "output" not in v:  # the student's model's output: any value (the suites judge it)
        return "output"
    if not (v.get("forward_error") is None or type(v["forward_error"]) is str):
        return "forward_error"
    captured = v.get("captured")  # the inputs of the modules the grader named: any value
    if not (isinstance(captured, dict) and set(captured) <= set(args.get("capture", []))):
        return "captured"
    if not (isinstance(v.get("reached"), list) and all(type(n) is str for n in v["reached"])):
        return "reached"
    grads = v.get("grads")
    if not (isinstance(grads, dict) and all(g is None or _tensor(g) for g in grads.values())):
        return "grads"
    return None


#: Convention harness -> the shape its reply must have.
REPLY_SCHEMAS = {"grads_in_place": _grads_in_place_problem, "optimizer_state": _optimizer_state_problem,
                 "table_update": _table_update_problem, "episode_loop": _episode_loop_problem,
                 "recurrent_cell": _recurrent_cell_problem, "module_transform": _module_transform_problem}


def reply_problem(convention: Any, value: dict[str, Any], args: dict[str, Any]) -> str | None:
    """None when a convention's decoded reply has the shape its facts and suite rely on, else the
    first bad key. Add a schema here with every new convention (lengths from the request, plain
    tensors, identities)."""
    check = REPLY_SCHEMAS.get(convention.harness)
    if check is None:  # never for the course's harnesses (tests/sandbox/test_replies.py checks that each has one)
        return None
    try:
        return check(convention, value, args)
    except (KeyError, TypeError, ValueError):
        return "unexpected structure"
