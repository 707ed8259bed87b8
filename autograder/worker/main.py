"""The sandboxed worker: executes the student's code and answers the grader's calls with data.

Runs inside the sandbox (bubblewrap) with nothing of the course but this package and the
student's extracted code. It reads request frames and writes replies on the two pipe descriptors
named on its command line; the student's own prints go to stdout/stderr, which the grader drains and caps.

Requests (header ``op``):
- ``setup``: ``{"forbidden": {function: {"patterns", "aten"}}, "sentinels": [...]}`` — install the
  forbidden-call recorders before any student code runs.
- ``exec``: ``{"source", "filename"}`` — execute one cell of student code in the notebook namespace.
- ``call``: ``{"function", "harness", "convention", "args", "device", "grad_wrt", "repeat",
  "upstream", "layouts"}`` — call a graded function through the harness of its calling convention
  and reply with data (see ``harness.py``).
Every reply echoes the request's ``id``.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from typing import Any

_STUDENT_FILENAME_PREFIX = "<cell "


class _IPythonStub:
    """What ``get_ipython()`` returns: magics and shell escapes do nothing in the grader."""

    def system(self, *args: Any, **kwargs: Any) -> None:
        return None

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    def run_cell_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    getoutput = system

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _student_traceback(exc: BaseException) -> tuple[str, str]:
    """(one-line message, traceback limited to the student's own cells)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(_STUDENT_FILENAME_PREFIX)]
    where = f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})" if frames else ""
    text = str(exc).strip().splitlines()
    first = text[0][:300] if text else ""
    message = f"{type(exc).__name__}: {first}{where}" if first else f"{type(exc).__name__}{where}"
    detail = "".join(traceback.format_list(frames))[-3000:]
    return message, detail


def _raised_by_student(exc: BaseException, kind: type) -> bool:
    """True when ``exc`` is a ``kind`` raised directly by the student's own code (a stub's
    ``raise NotImplementedError()``), not by torch deep inside a call (meta kernels raise it too)."""
    if not isinstance(exc, kind):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_STUDENT_FILENAME_PREFIX)


class Worker:
    def __init__(self, requests: io.BufferedReader, replies: io.BufferedWriter) -> None:
        import torch  # noqa: F401  (imported before any student code: the expensive part)

        from . import harness, protocol

        self.protocol = protocol
        self.harness = harness
        self.requests = requests
        self.replies = replies
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__,
                                          "get_ipython": _IPythonStub}
        self.recorder = None
        self.forbidden: dict[str, dict[str, list[str]]] = {}

    # ------------------------------------------------------------------------------ requests
    def serve(self) -> None:
        while True:
            try:
                header, tensors = self.protocol.read_frame(self.requests)
            except EOFError:
                return
            reply, reply_tensors = self.handle(header, tensors)
            reply["id"] = header.get("id")
            self.protocol.write_frame(self.replies, reply, reply_tensors)

    def handle(self, header: dict[str, Any], tensors: dict) -> tuple[dict[str, Any], dict]:
        op = header.get("op")
        try:
            if op == "setup":
                return self.setup(header), {}
            if op == "exec":
                return self.exec_cell(header), {}
            if op == "call":
                return self.call(header, tensors)
            return {"ok": False, "error": {"kind": "protocol", "message": f"unknown op {op!r}"}}, {}
        except BaseException as exc:  # noqa: BLE001 - everything the student raises is data here
            kind = "not_implemented" if _raised_by_student(exc, NotImplementedError) else "exception"
            message, detail = _student_traceback(exc)
            return {"ok": False, "error": {"kind": kind, "message": message, "detail": detail}}, {}

    def setup(self, header: dict[str, Any]) -> dict[str, Any]:
        self.forbidden = header.get("forbidden", {})
        from . import recorders
        patterns = sorted({p for spec in self.forbidden.values() for p in spec.get("patterns", [])})
        aten = sorted({a for spec in self.forbidden.values() for a in spec.get("aten", [])})
        self.recorder = recorders.Recorder(patterns, aten, list(header.get("sentinels", [])))
        self.recorder.install()
        return {"ok": True, "recorders": True}

    def exec_cell(self, header: dict[str, Any]) -> dict[str, Any]:
        code = compile(str(header["source"]), str(header.get("filename", "<cell ?>")), "exec")
        exec(code, self.namespace)  # noqa: S102 - this is the sandboxed student process
        return {"ok": True}

    def call(self, header: dict[str, Any], tensors: dict) -> tuple[dict[str, Any], dict]:
        import torch

        name = str(header["function"])
        fn = self.namespace.get(name)
        if not callable(fn):
            what = "is not defined" if fn is None else f"is a {type(fn).__name__}, not a function"
            return {"ok": False, "error": {"kind": "missing", "message": f"`{name}` {what} in the notebook"}}, {}
        device = str(header.get("device", "cpu"))
        args = {k: self._materialise(v, tensors, device) for k, v in header.get("args", {}).items()}
        harness_name = str(header.get("harness", "function"))
        if harness_name != "function" and harness_name not in self.harness.HARNESSES:
            return {"ok": False, "error": {"kind": "protocol", "message": f"unknown harness {harness_name!r}"}}, {}
        torch.set_grad_enabled(True)
        with self._recording():
            if harness_name == "function":
                upstream = self._materialise(header.get("upstream"), tensors, device)
                value = self.harness.function(fn, args, list(header.get("grad_wrt", [])), upstream,
                                              int(header.get("repeat", 1)), dict(header.get("layouts") or {}),
                                              [str(n) for n in header.get("signature") or []])
            else:
                value = self.harness.HARNESSES[harness_name](fn, args, dict(header.get("convention") or {}))
        encoder = self.protocol.Encoder()
        reply = {"ok": True, "value": encoder(value), "forbidden": self._hits(name)}
        return reply, encoder.tensors

    # ------------------------------------------------------------------------------- helpers
    def _materialise(self, value: Any, tensors: dict, device: str) -> Any:
        import torch

        decoded = self.protocol.decode(value, tensors, restore_device=False)
        def place(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                if device == "meta":
                    return torch.empty(v.shape, dtype=v.dtype, device="meta")
                return v.to(device) if device != "cpu" else v
            if isinstance(v, (list, tuple)):
                return type(v)(place(x) for x in v)
            if isinstance(v, dict):
                return {k: place(x) for k, x in v.items()}
            return v
        return place(decoded)

    def _recording(self):
        import contextlib

        if self.recorder is None:
            return contextlib.nullcontext()
        return self.recorder.recording()

    def _hits(self, function: str) -> list[str]:
        if self.recorder is None:
            return []
        hits = list(self.recorder.hits()) + [f"recorder tampering: {t}" for t in self.recorder.tampered()]
        if hasattr(self.recorder, "clear"):
            self.recorder.clear()
        return hits


def main(request_fd: int, reply_fd: int) -> None:
    requests = os.fdopen(request_fd, "rb", buffering=1 << 16)
    replies = os.fdopen(reply_fd, "wb", buffering=1 << 16)
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.stdin = open(os.devnull)  # noqa: SIM115 - reading stdin gets nothing, never blocks
    Worker(requests, replies).serve()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
