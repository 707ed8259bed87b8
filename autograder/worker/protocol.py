"""The wire between the grader and the sandboxed worker: data only, both ways.

A frame is::

    b"AGW1" | u32 header length | header (UTF-8 JSON object) | u64 payload length | payload

where the payload is a safetensors blob (possibly empty). Values inside the header are JSON, except
that a tensor is written as ``{"$tensor": key, ...info}`` (its data under ``key`` in the payload),
a tensor without data (the ``meta`` device) as ``{"$meta": {...info}}``, and a value the worker
could not or would not encode as ``{"$bad": "description"}``. Nothing is ever pickled, and the
grader never calls ``torch.load`` on worker output: safetensors parses raw buffers only.

This module is imported on both sides of the boundary, so it depends on torch, safetensors and the
standard library only.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any, BinaryIO

import torch
from safetensors.torch import save as st_save

MAGIC = b"AGW1"
MAX_HEADER_BYTES = 4 << 20
MAX_PAYLOAD_BYTES = 512 << 20  # a request (grader -> worker)
MAX_REPLY_PAYLOAD = 64 << 20  # a reply's tensors (worker -> grader; autograder/limits.py)
MAX_DEPTH = 24  # nesting of a decoded value
MAX_STRING = 4000
MAX_ITEMS = 10_000

_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16,
              torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128)
}


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed frame (or one over the caps)."""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ProtocolError("unsupported dtype") from None


# ----------------------------------------------------------------------------------------- framing

def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_frame(stream: BinaryIO, header: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> None:
    blob = st_save(tensors) if tensors else b""
    head = json.dumps(header, allow_nan=True, separators=(",", ":")).encode()
    stream.write(MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<Q", len(blob)))
    if blob:
        stream.write(blob)
    stream.flush()


class Budget:
    """Bytes that the replies of one submission may still carry (grader side). Every frame is
    charged, header and payload, before it is read: an oversized reply is never copied."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.left = total

    def take(self, n: int) -> None:
        if n > self.left:
            self.left = 0
            raise ProtocolError(f"the worker's replies exceeded {self.total >> 20} MiB for this submission")
        self.left -= n


def _read_into(stream: BinaryIO, buffer: bytearray) -> None:
    view, done = memoryview(buffer), 0
    while done < len(buffer):
        chunk = stream.read(min(len(buffer) - done, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        view[done:done + len(chunk)] = chunk
        done += len(chunk)


def read_frame(
    stream: BinaryIO, *, max_header: int = MAX_HEADER_BYTES, max_payload: int = MAX_PAYLOAD_BYTES,
    budget: Budget | None = None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """One frame. Sizes are checked against the caps (and charged to ``budget``) before anything
    is read; the payload is read once into one buffer and the tensors are views of it."""
    if _read_exact(stream, 4) != MAGIC:
        raise ProtocolError("bad frame magic")
    (n_head,) = struct.unpack("<I", _read_exact(stream, 4))
    if n_head > max_header:
        raise ProtocolError(f"a header over the cap of {max_header >> 10} KiB")
    if budget is not None:
        budget.take(n_head)
    try:
        header = json.loads(_read_exact(stream, n_head))
    except (ValueError, RecursionError, MemoryError) as exc:  # JSON and UTF-8 errors, and integers too long to read
        raise ProtocolError(f"header is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    (n_blob,) = struct.unpack("<Q", _read_exact(stream, 8))
    if n_blob > max_payload:
        raise ProtocolError(f"tensors over the cap of {max_payload >> 20} MiB for one call")
    if budget is not None:
        budget.take(n_blob)
    tensors: dict[str, torch.Tensor] = {}
    if n_blob:
        buffer = bytearray(n_blob)
        _read_into(stream, buffer)
        tensors = parse_safetensors(buffer)
    return header, tensors


_ST_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
              "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8,
              "BOOL": torch.bool, "C64": torch.complex64}


def parse_safetensors(buffer: bytearray) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors blob, as views of ``buffer`` (no copy), every field checked."""
    if len(buffer) < 8:
        raise ProtocolError("payload is not safetensors (too short)")
    (n,) = struct.unpack("<Q", bytes(buffer[:8]))
    if n > min(len(buffer) - 8, MAX_HEADER_BYTES):
        raise ProtocolError("payload is not safetensors (header size)")
    try:
        meta = json.loads(bytes(buffer[8:8 + n]))
    except (ValueError, RecursionError, MemoryError):
        raise ProtocolError("payload is not safetensors (header is not JSON)") from None
    if not isinstance(meta, dict) or len(meta) > MAX_ITEMS + 1:
        raise ProtocolError("payload is not safetensors (header)")
    start, size = 8 + n, len(buffer) - 8 - n
    out: dict[str, torch.Tensor] = {}
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("payload is not safetensors (tensor description)") from None
        if len(shape) > 64 or any(d < 0 for d in shape) or not 0 <= begin <= end <= size:
            raise ProtocolError("payload is not safetensors (tensor bounds)")
        count = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if count * itemsize != end - begin:
            raise ProtocolError("payload is not safetensors (tensor size)")
        if count == 0:
            out[str(name)] = torch.empty(shape, dtype=dtype)
        else:
            out[str(name)] = torch.frombuffer(buffer, dtype=dtype, count=count, offset=start + begin).view(shape)
    return out


# ------------------------------------------------------------------------------------------ values

class Encoder:
    """Turns a value tree (tensors, numbers, strings, lists, dicts) into header JSON plus tensors.

    Only exact ``torch.Tensor`` instances are encoded with their data; subclasses and foreign
    objects become ``{"$bad": ...}`` so that the grader can explain what was returned.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.bytes = 0

    def __call__(self, value: Any, depth: int = 0) -> Any:
        if depth > 20:
            return {"$bad": "value nested too deeply"}
        if value is None or type(value) is bool:
            return value
        if type(value) is str:
            return value[:MAX_STRING]
        if type(value) is int:
            return value if abs(value) < 2**62 else float(value)
        if isinstance(value, float) and type(value).__mro__[-2] is float:  # float and numpy.float64
            return float(value)
        if isinstance(value, torch.Tensor) and (value.is_nested or value.layout != torch.strided):
            return {"$bad": "a sparse or nested tensor, not a dense torch.Tensor"}  # no shape to describe
        if type(value) is torch.Tensor:
            return self.tensor(value)
        if isinstance(value, torch.Tensor):
            return {"$bad": f"a {_type_name(value)} (a subclass of torch.Tensor), not a torch.Tensor"}
        if type(value) in (list, tuple):
            if len(value) > MAX_ITEMS:
                return {"$bad": f"a {type(value).__name__} of {len(value)} items"}
            return {"$list": [self(v, depth + 1) for v in value], "$type": type(value).__name__}
        if type(value) is dict:
            items = list(value.items())[:MAX_ITEMS]
            return {"$dict": {str(k)[:200]: self(v, depth + 1) for k, v in items}}
        return {"$bad": f"a {_type_name(value)}"}

    def tensor(self, value: torch.Tensor) -> dict[str, Any]:
        info = {
            "dtype": dtype_name(value.dtype),
            "device": str(value.device),
            "shape": list(value.shape),
            "requires_grad": bool(value.requires_grad),
            "is_leaf": bool(value.is_leaf),
        }
        if value.device.type == "meta":
            return {"$meta": info}
        size = value.numel() * value.element_size()  # the logical size: an expand() view counts in full
        if self.bytes + size > MAX_REPLY_PAYLOAD:
            return {"$bad": f"a tensor of {size >> 20} MiB, over the {MAX_REPLY_PAYLOAD >> 20} MiB a reply may carry"}
        self.bytes += size
        key = f"t{len(self.tensors)}"
        data = value.detach()
        if data.device.type != "cpu":
            data = data.cpu()
        self.tensors[key] = data.contiguous().clone() if data.numel() else data.contiguous()
        return {"$tensor": key, **info}


def _type_name(value: Any) -> str:
    cls = type(value)
    name = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"
    return "".join(ch for ch in name if ch.isprintable())[:120]


_OWN_WORDS = ("tensor with an impossible shape", "malformed tensor description", "malformed list", "malformed dict",
              "tensor data missing from the payload", "unknown value", "a value nested too deeply")


def describe_bad(text: Any) -> str:
    """What the grader says about a value the worker could not send. The worker's own description
    is the student's text (any class name, any string), so only its category is kept."""
    text = str(text)
    if text in _OWN_WORDS:
        return text
    if "not a dense torch.Tensor" in text:
        return "a sparse or nested tensor, not a dense torch.Tensor"
    if "subclass of torch.Tensor" in text:
        return "a subclass of torch.Tensor, not a torch.Tensor"
    if "MiB" in text:
        return "a tensor too large to send back"
    if "nested too deeply" in text:
        return "a value nested too deeply"
    if text.startswith(("a list of", "a tuple of")):
        return "a list or tuple of too many items"
    if text.startswith("a numpy."):
        return "a numpy value, not a torch.Tensor"
    return "an object of a type the grader does not accept"


class Bad:
    """A value the worker could not encode; ``what`` says what it was."""

    def __init__(self, what: str) -> None:
        self.what = describe_bad(what)  # written by the worker, so by the student: its category only

    def __repr__(self) -> str:
        return f"Bad({self.what!r})"


_CUDA_DEVICE = re.compile(r"cuda(:[0-9]{1,2})?")


def decode(value: Any, tensors: dict[str, torch.Tensor], *, restore_device: bool = True, depth: int = 0) -> Any:
    """Inverse of :class:`Encoder`. Tensors come back on the device they were reported on when that
    device exists here (``meta`` always does); values that fail validation become :class:`Bad`."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if depth > MAX_DEPTH:
        return Bad("a value nested too deeply")
    sub = {"restore_device": restore_device, "depth": depth + 1}
    if isinstance(value, list):
        return [decode(v, tensors, **sub) for v in value[:MAX_ITEMS]]
    if not isinstance(value, dict):
        return Bad("unknown value")
    if "$bad" in value:
        return Bad(value["$bad"])
    if "$list" in value:
        if not isinstance(value["$list"], list):
            return Bad("malformed list")
        items = [decode(v, tensors, **sub) for v in value["$list"][:MAX_ITEMS]]
        return tuple(items) if value.get("$type") == "tuple" else items
    if "$dict" in value:
        if not isinstance(value["$dict"], dict):
            return Bad("malformed dict")
        return {str(k)[:200]: decode(v, tensors, **sub) for k, v in list(value["$dict"].items())[:MAX_ITEMS]}
    if "$meta" in value:
        info = value["$meta"]
        try:
            shape = [int(s) for s in info["shape"]]
            if len(shape) > 64 or any(s < 0 for s in shape) or math.prod(shape) > (1 << 40):
                return Bad("tensor with an impossible shape")
            return torch.empty(shape, dtype=parse_dtype(str(info["dtype"])), device="meta")
        except (KeyError, TypeError, ValueError, ProtocolError, RuntimeError):
            return Bad("malformed tensor description")
    if "$tensor" in value:
        data = tensors.get(str(value["$tensor"]))
        if data is None:
            return Bad("tensor data missing from the payload")
        device = str(value.get("device", "cpu"))
        # Only a CUDA device is ever restored: the name is the worker's (the student's) to choose, and
        # moving to another backend's device may import its module or raise anything at all.
        if restore_device and _CUDA_DEVICE.fullmatch(device) and torch.cuda.is_available():
            try:
                data = data.to(torch.device(device))
            except (RuntimeError, ValueError, AssertionError):
                pass  # no such CUDA device here: keep the values, compare on the CPU
        return data
    return Bad("unknown value")
