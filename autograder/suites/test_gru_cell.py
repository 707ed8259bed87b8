"""Hidden tests of ``gru_cell(x, h, params)`` (docs/exercises.md §13): one step of d2l's GRU, graded on
single steps and on a sequence that the grader unrolls through the student's cell, with
backpropagation through time (the ``recurrent_cell`` harness, see ``_recurrent.py``).

Known mistakes are the GRU written out with one thing changed, unrolled on the same inputs: when the
student's run matches one of them, the feedback names it.
"""

from __future__ import annotations

import torch

from autograder.suites import _recurrent as rec
from reference import gru_cell as reference_gru

EXERCISE = "gru_cell"
SPEC = rec.CellSpec(EXERCISE, ("W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h"), ("h",),
                    reference_gru)

#: (batch, d_in, d_h) of the ordinary tests: d_in != d_h so that a transposed weight cannot fit.
SHAPE = (3, 4, 5)
#: Steps of the sequence test.
STEPS = 6
#: Shapes of the shape test: a batch of one, one input feature, one hidden unit, wide and narrow.
ODD_SHAPES = ((1, 1, 1), (1, 6, 2), (7, 2, 9))
NON_CONTIGUOUS = ("transposed", "strided")
#: A bias this large saturates its gate: sigmoid(40) is exactly 1.0 in float32 and float64.
SATURATED = 40.0

HINT_VALUES = ("z = sigmoid(x @ W_xz + h @ W_hz + b_z), r = sigmoid(x @ W_xr + h @ W_hr + b_r), "
               "h~ = tanh(x @ W_xh + (r * h) @ W_hh + b_h), and return z * h + (1 - z) * h~")
HINT_SEQUENCE = ("the grader feeds each step's returned h into the next step with the same params: return the new "
                 "state h' itself (a tensor of shape (batch, d_h)) and keep it connected to the graph")
HINT_KEEP = ("with the update gate z = 1 the GRU must keep its state exactly, h' = h: z multiplies the old state, "
             "h' = z * h + (1 - z) * h~")
HINT_FORGET = ("with z = 0 and the reset gate r = 0 the new state is the candidate computed without h, "
               "tanh(x @ W_xh + b_h): the reset gate multiplies h before W_hh, (r * h) @ W_hh")


def _sigmoid_candidate(x, h, p):
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    return z * h + (1 - z) * torch.sigmoid(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])


def _reset_after_product(x, h, p):
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    return z * h + (1 - z) * torch.tanh(x @ p["W_xh"] + r * (h @ p["W_hh"]) + p["b_h"])


def _z_reversed(x, h, p):
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    return z * torch.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"]) + (1 - z) * h


def _gates_swapped(x, h, p):
    swapped = {**p, "W_xz": p["W_xr"], "W_hz": p["W_hr"], "b_z": p["b_r"],
               "W_xr": p["W_xz"], "W_hr": p["W_hz"], "b_r": p["b_z"]}
    return reference_gru(x, h, swapped)


def _no_reset(x, h, p):
    z = torch.sigmoid(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    return z * h + (1 - z) * torch.tanh(x @ p["W_xh"] + h @ p["W_hh"] + p["b_h"])


def _candidate_only(x, h, p):
    r = torch.sigmoid(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    return torch.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])


def _tanh_gates(x, h, p):
    z = torch.tanh(x @ p["W_xz"] + h @ p["W_hz"] + p["b_z"])
    r = torch.tanh(x @ p["W_xr"] + h @ p["W_hr"] + p["b_r"])
    return z * h + (1 - z) * torch.tanh(x @ p["W_xh"] + (r * h) @ p["W_hh"] + p["b_h"])


MISTAKES = {
    "a sigmoid on the candidate: h~ = tanh(x @ W_xh + (r * h) @ W_hh + b_h) uses tanh (values in (-1, 1)); "
    "sigmoid is for the gates z and r": _sigmoid_candidate,
    "the reset gate applied after the product, r * (h @ W_hh) (torch.nn.GRUCell's variant): here the reset gate "
    "scales the state first, (r * h) @ W_hh": _reset_after_product,
    "z and 1 - z exchanged, h' = z * h~ + (1 - z) * h: in d2l's convention h' = z * h + (1 - z) * h~ "
    "(z = 1 keeps the old state)": _z_reversed,
    "the update and reset gates swapped: z uses W_xz, W_hz, b_z and r uses W_xr, W_hr, b_r": _gates_swapped,
    "a candidate without the reset gate: h~ = tanh(x @ W_xh + (r * h) @ W_hh + b_h)": _no_reset,
    "the candidate h~ returned instead of the new state h' = z * h + (1 - z) * h~": _candidate_only,
    "tanh on the gates: z and r are sigmoids (values in (0, 1)), only the candidate uses tanh": _tanh_gates,
}


CHECKS = rec.CellChecks(SPEC, SHAPE, STEPS, ODD_SHAPES, NON_CONTIGUOUS, MISTAKES, HINT_VALUES, HINT_SEQUENCE)
_check_run = CHECKS.check_run


def test_values(student, rng, device, exercise):
    CHECKS.check_values(student, rng, device, exercise)


def test_gradients(student, rng, device, exercise):
    CHECKS.check_gradients(student, rng, device, exercise)


def test_sequence_bptt(student, rng, device, exercise):
    CHECKS.check_sequence(student, rng, device, exercise)


def test_gates(student, rng, device, exercise):
    keep = rec.make_problem(rng, SPEC, 1, *SHAPE, biases={"b_z": SATURATED})
    _check_run(student, device, exercise, keep, hint=HINT_KEEP, case=" with the update gate z = 1")
    forget = rec.make_problem(rng, SPEC, 1, *SHAPE, biases={"b_z": -SATURATED, "b_r": -SATURATED})
    _check_run(student, device, exercise, forget, hint=HINT_FORGET, case=" with z = 0 and r = 0")


def test_shapes(student, rng, device, exercise):
    CHECKS.check_shapes(student, rng, device, exercise)


def test_float32(student, rng, device, exercise):
    CHECKS.check_float32(student, rng, device, exercise)


def test_device(student, rng, device, propagation_devices, exercise):
    CHECKS.check_device(student, rng, device, propagation_devices, exercise)


def test_no_mutation(student, rng, device, exercise):
    CHECKS.check_no_mutation(student, rng, device, exercise)
