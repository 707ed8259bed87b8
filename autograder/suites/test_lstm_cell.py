"""Hidden tests of ``lstm_cell(x, state, params)`` (docs/exercises.md §14): one step of d2l's LSTM,
returning ``(h', c')``, graded on single steps and on a sequence that the grader unrolls through the
student's cell, with backpropagation through time (the ``recurrent_cell`` harness, see
``_recurrent.py``).

Known mistakes are the LSTM written out with one thing changed, unrolled on the same inputs: when the
student's run matches one of them, the feedback names it.
"""

from __future__ import annotations

import torch

from autograder.suites import _recurrent as rec
from reference import lstm_cell as reference_lstm

EXERCISE = "lstm_cell"
SPEC = rec.CellSpec(EXERCISE, ("W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o", "W_xc", "W_hc",
                               "b_c"), ("h", "c"), reference_lstm)

#: (batch, d_in, d_h) of the ordinary tests: d_in != d_h so that a transposed weight cannot fit.
SHAPE = (3, 4, 5)
#: Steps of the sequence test.
STEPS = 6
#: Shapes of the shape test: a batch of one, one input feature, one hidden unit, wide and narrow.
ODD_SHAPES = ((1, 1, 1), (1, 6, 2), (7, 2, 9))
NON_CONTIGUOUS = ("transposed", "strided")
#: A bias this large saturates its gate: sigmoid(40) is exactly 1.0 in float32 and float64.
SATURATED = 40.0

HINT_VALUES = ("i, f, o = sigmoid(x @ W_x* + h @ W_h* + b_*) with their own weights, c~ = tanh(x @ W_xc + h @ W_hc + "
               "b_c), c' = f * c + i * c~, h' = o * tanh(c'), and return the tuple (h', c')")
HINT_SEQUENCE = ("the grader feeds each step's returned (h', c') into the next step with the same params: return the "
                 "tuple (h', c') in that order and keep both connected to the graph")
HINT_KEEP = ("with the forget gate f = 1 and the input gate i = 0 the memory must stay exactly as it was, c' = c: "
             "f scales the old memory and i the candidate, c' = f * c + i * c~")
HINT_REPLACE = ("with f = 0 and i = 1 the memory is replaced by the candidate, c' = c~ = tanh(x @ W_xc + h @ W_hc "
                "+ b_c)")
HINT_HIDE = "with the output gate o = 0 the state shows nothing, h' = o * tanh(c') = 0"


def _lstm(x, state, p, *, swap_if=False, candidate=torch.tanh, squash=torch.tanh, gates=torch.sigmoid,
          swap_io=False, no_forget=False, order="hc", h_from=None):
    """The LSTM step written out with one thing changeable (the known mistakes)."""
    h, c = state
    gi = "o" if swap_io else "i"
    go = "i" if swap_io else "o"
    i = gates(x @ p[f"W_x{gi}"] + h @ p[f"W_h{gi}"] + p[f"b_{gi}"])
    f = gates(x @ p["W_xf"] + h @ p["W_hf"] + p["b_f"])
    o = gates(x @ p[f"W_x{go}"] + h @ p[f"W_h{go}"] + p[f"b_{go}"])
    c_tilde = candidate(x @ p["W_xc"] + h @ p["W_hc"] + p["b_c"])
    if no_forget:
        c_next = c + i * c_tilde
    elif swap_if:
        c_next = i * c + f * c_tilde
    else:
        c_next = f * c + i * c_tilde
    h_next = h_from(o, c_next, c_tilde) if h_from else o * squash(c_next)
    return (h_next, c_next) if order == "hc" else (c_next, h_next)


MISTAKES = {
    "the forget and input gates on each other's term, c' = i * c + f * c~: the forget gate f scales the old "
    "memory c, the input gate i the candidate c~": lambda x, s, p: _lstm(x, s, p, swap_if=True),
    "a sigmoid on the candidate memory: c~ = tanh(x @ W_xc + h @ W_hc + b_c); sigmoid is for the gates i, f, o":
        lambda x, s, p: _lstm(x, s, p, candidate=torch.sigmoid),
    "h' = o * c' without the tanh: h' = o * tanh(c')": lambda x, s, p: _lstm(x, s, p, squash=lambda t: t),
    "h' computed from the candidate c~ instead of the new memory: h' = o * tanh(c')":
        lambda x, s, p: _lstm(x, s, p, h_from=lambda o, c_next, c_tilde: o * torch.tanh(c_tilde)),
    "h' = tanh(o * c'): the output gate multiplies tanh(c'), h' = o * tanh(c')":
        lambda x, s, p: _lstm(x, s, p, h_from=lambda o, c_next, c_tilde: torch.tanh(o * c_next)),
    "the input and output gates swapped: i uses W_xi, W_hi, b_i and o uses W_xo, W_ho, b_o":
        lambda x, s, p: _lstm(x, s, p, swap_io=True),
    "no forget gate, c' = c + i * c~: the old memory is scaled by f, c' = f * c + i * c~":
        lambda x, s, p: _lstm(x, s, p, no_forget=True),
    "(c', h') returned instead of (h', c'): return the tuple (h', c') in that order":
        lambda x, s, p: _lstm(x, s, p, order="ch"),
    "tanh on the gates: i, f and o are sigmoids (values in (0, 1)), only the candidate and c' use tanh":
        lambda x, s, p: _lstm(x, s, p, gates=torch.tanh),
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
    keep = rec.make_problem(rng, SPEC, 1, *SHAPE, biases={"b_f": SATURATED, "b_i": -SATURATED})
    _check_run(student, device, exercise, keep, hint=HINT_KEEP, case=" with the forget gate f = 1 and i = 0")
    replace = rec.make_problem(rng, SPEC, 1, *SHAPE, biases={"b_f": -SATURATED, "b_i": SATURATED})
    _check_run(student, device, exercise, replace, hint=HINT_REPLACE, case=" with f = 0 and i = 1")
    hide = rec.make_problem(rng, SPEC, 1, *SHAPE, biases={"b_o": -SATURATED})
    _check_run(student, device, exercise, hide, hint=HINT_HIDE, case=" with the output gate o = 0")


def test_shapes(student, rng, device, exercise):
    CHECKS.check_shapes(student, rng, device, exercise)


def test_float32(student, rng, device, exercise):
    CHECKS.check_float32(student, rng, device, exercise)


def test_device(student, rng, device, propagation_devices, exercise):
    CHECKS.check_device(student, rng, device, propagation_devices, exercise)


def test_no_mutation(student, rng, device, exercise):
    CHECKS.check_no_mutation(student, rng, device, exercise)
