"""The attempt gate of the property tests (``autograder/suites/_common.expect_attempted``) judges
what the worker sent without ever failing itself: outputs that carry no values (a tensor without
data, which a student's process can forge on the wire, or a value that is not a tensor) are left to
the property test, never a crash of the hidden suite (an "internal grader error")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from autograder.grading.compare import GradingFailure
from autograder.suites._common import expect_attempted
from autograder.worker.protocol import Bad


class Replies:
    """A stand-in student session whose function returns ``outputs`` in turn."""

    def __init__(self, *outputs):
        self.outputs = list(outputs)

    def vjp(self, function, args, device="cpu"):
        return SimpleNamespace(output=self.outputs.pop(0))


def gate(*outputs):
    expect_attempted(Replies(*outputs), "f", {"X": torch.zeros(2)}, {"X": torch.ones(2)}, device="cpu",
                     what="X", owns="the property")


@pytest.mark.parametrize("outputs", [
    (torch.empty(3, device="meta"), torch.empty(3, device="meta")),
    (torch.zeros(3), torch.empty(3, device="meta")),
    (Bad("a sparse or nested tensor, not a dense torch.Tensor"),) * 2,
    (None, None),
    (torch.zeros(3), torch.ones(3)),
], ids=["no data", "one without data", "not sendable", "nothing returned", "responds"])
def test_the_gate_leaves_valueless_outputs_to_the_property_test(outputs):
    gate(*outputs)


def test_the_gate_fails_a_constant_output():
    with pytest.raises(GradingFailure, match="returned the same output when X changed"):
        gate(torch.zeros(3), torch.zeros(3))
