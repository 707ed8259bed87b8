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
import struct
from typing import Any, BinaryIO

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

MAGIC = b"AGW1"
MAX_HEADER_BYTES = 4 << 20
MAX_PAYLOAD_BYTES = 512 << 20
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
        raise ProtocolError(f"unsupported dtype {name[:40]!r}") from None


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


def read_frame(
    stream: BinaryIO, *, max_header: int = MAX_HEADER_BYTES, max_payload: int = MAX_PAYLOAD_BYTES
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if _read_exact(stream, 4) != MAGIC:
        raise ProtocolError("bad frame magic")
    (n_head,) = struct.unpack("<I", _read_exact(stream, 4))
    if n_head > max_header:
        raise ProtocolError(f"header of {n_head} bytes exceeds the cap of {max_header}")
    try:
        header = json.loads(_read_exact(stream, n_head))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    (n_blob,) = struct.unpack("<Q", _read_exact(stream, 8))
    if n_blob > max_payload:
        raise ProtocolError(f"payload of {n_blob} bytes exceeds the cap of {max_payload}")
    tensors: dict[str, torch.Tensor] = {}
    if n_blob:
        try:
            tensors = st_load(_read_exact(stream, n_blob))
        except EOFError:
            raise
        except Exception as exc:  # safetensors raises its own error types on malformed buffers
            raise ProtocolError(f"payload is not safetensors ({exc.__class__.__name__})") from None
    return header, tensors


# ------------------------------------------------------------------------------------------ values

class Encoder:
    """Turns a value tree (tensors, numbers, strings, lists, dicts) into header JSON plus tensors.

    Only exact ``torch.Tensor`` instances are encoded with their data; subclasses and foreign
    objects become ``{"$bad": ...}`` so that the grader can explain what was returned.
    """

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

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
        if value.device.type == "meta" or value.layout != torch.strided:
            return {"$meta": info}
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


class Bad:
    """A value the worker could not encode; ``what`` says what it was."""

    def __init__(self, what: str) -> None:
        self.what = str(what)[:300]

    def __repr__(self) -> str:
        return f"Bad({self.what!r})"


def decode(value: Any, tensors: dict[str, torch.Tensor], *, restore_device: bool = True) -> Any:
    """Inverse of :class:`Encoder`. Tensors come back on the device they were reported on when that
    device exists here (``meta`` always does); values that fail validation become :class:`Bad`."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, list):
        return [decode(v, tensors, restore_device=restore_device) for v in value[:MAX_ITEMS]]
    if not isinstance(value, dict):
        return Bad("unknown value")
    if "$bad" in value:
        return Bad(value["$bad"])
    if "$list" in value:
        items = [decode(v, tensors, restore_device=restore_device) for v in value["$list"][:MAX_ITEMS]]
        return tuple(items) if value.get("$type") == "tuple" else items
    if "$dict" in value:
        return {str(k): decode(v, tensors, restore_device=restore_device) for k, v in value["$dict"].items()}
    if "$meta" in value:
        info = value["$meta"]
        try:
            shape = [int(s) for s in info["shape"]]
            if any(s < 0 for s in shape) or math.prod(shape) > (1 << 40):
                return Bad("tensor with an impossible shape")
            return torch.empty(shape, dtype=parse_dtype(info["dtype"]), device="meta")
        except (KeyError, TypeError, ValueError, ProtocolError):
            return Bad("malformed tensor description")
    if "$tensor" in value:
        data = tensors.get(str(value["$tensor"]))
        if data is None:
            return Bad("tensor data missing from the payload")
        device = str(value.get("device", "cpu"))
        if restore_device and device != "cpu":
            try:
                data = data.to(torch.device(device))
            except (RuntimeError, ValueError):
                pass  # the device does not exist here: keep the values, compare on the CPU
        return data
    return Bad("unknown value")


def encode_inputs(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Grader side: encode named call arguments (tensors must be plain CPU/CUDA tensors)."""
    enc = Encoder()
    return {k: enc(v) for k, v in values.items()}, enc.tensors
