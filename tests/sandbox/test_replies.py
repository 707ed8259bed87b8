"""What crosses back from the worker is capped while it is read, parsed without copies, and never
carries the student's text into a report. Fast: no sandbox."""

from __future__ import annotations

import io
import json
import struct

import pytest
import torch

from autograder import limits
from autograder.safeio import exception_summary, scrub
from autograder.worker import protocol


def _frame(header: dict, tensors: dict | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    protocol.write_frame(buffer, header, tensors)
    buffer.seek(0)
    return buffer


def test_a_zero_stride_view_is_refused_before_it_is_copied() -> None:
    huge = torch.zeros(1).expand(1 << 28)  # 1 GiB as float32, one element of storage
    encoder = protocol.Encoder()
    value = encoder({"output": huge})
    assert value["$dict"]["output"]["$bad"].startswith("a tensor of 1024 MiB") and encoder.tensors == {}
    assert protocol.decode(value, {})["output"].what == "a tensor too large to send back"


def test_oversized_frames_are_refused_before_reading() -> None:
    head = json.dumps({"id": "x"}).encode()
    declared = protocol.MAGIC + struct.pack("<I", len(head)) + head + struct.pack("<Q", limits.MAX_REPLY_BYTES + 1)
    with pytest.raises(protocol.ProtocolError, match="cap"):  # nothing follows: reading would hit EOF
        protocol.read_frame(io.BytesIO(declared), max_payload=limits.MAX_REPLY_BYTES)
    budget = protocol.Budget(1 << 20)
    tensors = {"t0": torch.ones(100_000)}  # 400 kB each
    protocol.read_frame(_frame({"id": 1}, tensors), budget=budget)
    protocol.read_frame(_frame({"id": 2}, tensors), budget=budget)
    with pytest.raises(protocol.ProtocolError, match="for this submission"):
        protocol.read_frame(_frame({"id": 3}, tensors), budget=budget)
    deep = protocol.MAGIC + struct.pack("<I", 200_000) + b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(protocol.ProtocolError, match="not JSON"):
        protocol.read_frame(io.BytesIO(deep + struct.pack("<Q", 0)))
    long_number = b'{"id": 1' + b"0" * 10_000 + b"}"  # JSON, but past the 4,300 digits Python reads
    with pytest.raises(protocol.ProtocolError, match="not JSON"):
        protocol.read_frame(io.BytesIO(protocol.MAGIC + struct.pack("<I", len(long_number)) + long_number
                                       + struct.pack("<Q", 0)))
    with pytest.raises(protocol.ProtocolError, match="not safetensors"):
        meta = b'{"t0": 1' + b"0" * 10_000 + b"}"
        protocol.parse_safetensors(bytearray(struct.pack("<Q", len(meta)) + meta))


def test_payload_is_parsed_in_place_and_checked() -> None:
    _, tensors = protocol.read_frame(_frame({}, {"t0": torch.arange(6.0).reshape(2, 3), "t1": torch.ones(0, 4)}))
    assert torch.equal(tensors["t0"], torch.arange(6.0).reshape(2, 3)) and tensors["t1"].shape == (0, 4)
    def blob(meta: dict, data: bytes) -> bytearray:
        head = json.dumps(meta).encode()
        return bytearray(struct.pack("<Q", len(head)) + head + data)

    data = torch.arange(4.0).numpy().tobytes()
    ok = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    assert torch.equal(protocol.parse_safetensors(blob({"t0": ok}, data))["t0"], torch.arange(4.0))
    for bad in ({**ok, "data_offsets": [0, 99]}, {**ok, "shape": [-1]}, {**ok, "dtype": "X9"}, {**ok, "shape": [5]},
                {**ok, "shape": "x"}):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_safetensors(blob({"t0": bad}, data))
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_safetensors(bytearray(struct.pack("<Q", 1 << 40) + b"{}"))


def test_deep_values_decode_to_bad() -> None:
    value: object = 1
    for _ in range(200):
        value = {"$list": [value]}
    out = protocol.decode(value, {})
    for _ in range(protocol.MAX_DEPTH + 1):
        out = out[0]
    assert isinstance(out, protocol.Bad)


def test_student_text_cannot_carry_data() -> None:
    labels = ["cell 3", "cell 7"]
    assert exception_summary("ValueError: hidden=0.1234 (cell 7, line 12)", labels) == "ValueError (cell 7)"
    assert exception_summary("Leak_0x1f2e: abc (cell 99, line 1)", labels) == "an exception of the notebook's own class"
    assert exception_summary("RuntimeError: mat1 and mat2 shapes (3x4 and 5x6)", labels) == "RuntimeError"
    assert protocol.Bad("a evil.Leak_12_34 (a subclass of torch.Tensor), not a torch.Tensor").what == \
        "a subclass of torch.Tensor, not a torch.Tensor"
    assert protocol.Bad("a secret_0.8374").what == "an object of a type the grader does not accept"
    assert "#" in scrub("x=0.8374 'secret'") and "8374" not in scrub("x=0.8374") and "secret" not in scrub("'secret'")


def test_sparse_and_nested_tensors_are_described_not_sent_as_meta() -> None:
    """Only a tensor without data travels as meta (the grader's propagation checks); a sparse or
    nested one is a value the grader does not accept, said in the grader's words."""
    import warnings

    with warnings.catch_warnings():  # the strided nested layout is a prototype; students may still use it
        warnings.simplefilter("ignore")
        nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    jagged = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)], layout=torch.jagged)
    encoder = protocol.Encoder()
    for value in (torch.eye(3).to_sparse(), nested, jagged):
        sent = encoder({"output": value})["$dict"]["output"]
        assert "$bad" in sent, sent
        assert protocol.decode(sent, {}).what == "a sparse or nested tensor, not a dense torch.Tensor"
    assert "$meta" in encoder(torch.empty(2, device="meta"))


def test_every_harness_reply_has_a_schema() -> None:
    """A harness without a schema lets a reply of any shape reach its suite (an internal grader error,
    a free regrade): each one the worker has must be declared in ``REPLY_SCHEMAS``."""
    from autograder.sandbox.session import REPLY_SCHEMAS
    from autograder.worker.harness import HARNESSES

    assert set(HARNESSES) <= set(REPLY_SCHEMAS)


@pytest.mark.parametrize("device", ["hpu", "xpu", "mtia", "privateuseone", "cuda:99", "cuda:0x", "lazy", ""])
def test_a_device_name_from_the_worker_is_never_trusted(device: str) -> None:
    """The worker names each tensor's device, and the student can rewrite that name: only a CUDA
    device is restored (where there is one); any other name keeps the values on the CPU, and no
    name makes the grader import a backend or raise."""
    value = protocol.decode({"$tensor": "t0", "device": device}, {"t0": torch.ones(2)})
    assert isinstance(value, torch.Tensor) and value.device.type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        assert value.device.type == "cpu"
