"""No text of the student's process reaches the feedback of the suites that read a harness's data
(``replace_classifier`` through ``module_transform``, the recurrent cells through ``recurrent_cell``),
and an honest mistake there is a failed test, never an internal grader error. Fast: the harnesses
run in-process on ``meta`` (or small CPU) tensors, their replies crossing the protocol, the reply
schema and the convention's facts as in ``StudentSession.run``; no sandbox."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from torch import nn

from autograder.course import registry
from autograder.grading.compare import GradingFailure
from autograder.sandbox.session import StudentError, reply_problem
from autograder.suites import _recurrent as rec
from autograder.suites import test_gru_cell as gru_suite
from autograder.suites import test_replace_classifier as suite
from autograder.worker import harness, protocol

LEAK = "LEAK_0p8672"  # what a student would write the hidden values into


class InProcess:
    """A ``StudentSession`` stand-in: ``run`` calls the harness here on ``fn``; ``forge`` rewrites
    its raw reply first (a harness replaced from a notebook cell), which then crosses the protocol,
    the reply schema and the convention's facts as in ``StudentSession.run``."""

    cells = ()
    device = "cpu"

    def __init__(self, fn: Callable, forge: Callable[[dict], dict] | None = None) -> None:
        self.fn, self.forge = fn, forge or (lambda raw: raw)

    def run(self, function: str, args: dict[str, Any], *, how: str | None = None, device: str | None = None,
            timeout: float | None = None) -> dict[str, Any]:
        exercise = registry.BY_NAME[function]
        convention = exercise.convention(how)
        placed = {k: v.to(device or "cpu") if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        raw = self.forge(harness.HARNESSES[convention.harness](self.fn, placed, convention.spec(exercise.parameters())))
        encoder = protocol.Encoder()
        value = protocol.decode(encoder(raw), encoder.tensors)
        problem = reply_problem(convention, value, args)
        if problem:
            raise StudentError("protocol", f"the worker's reply was malformed ({problem})")
        return convention.facts(value, args)


def _failure(test: Callable, student: InProcess, device: str = "meta") -> str:
    exercise = registry.BY_NAME[test.__module__.rsplit(".", 1)[-1].removeprefix("test_")]
    with pytest.raises(GradingFailure) as caught:
        test(student, torch.Generator().manual_seed(0), device, exercise)
    message = str(caught.value)
    assert "LEAK" not in message, message
    return message


def _replaced(model: nn.Module, num_classes: int) -> nn.Module:
    for p in model.parameters():
        p.requires_grad = False
    old = model.classifier[-1]
    model.classifier[-1] = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    return model


# --------------------------------------------------------------------------- replace_classifier


def test_forward_errors_are_named_by_their_type_only() -> None:
    own = type(LEAK, (Exception,), {})

    class Raises(nn.Module):
        def __init__(self, error: Exception) -> None:
            super().__init__()
            self.error = error

        def forward(self, x):
            raise self.error

    for error, said in ((ValueError(f"HIDDEN {LEAK} 0.86722 1.09454"), "raised ValueError"),
                        (own("0.86722"), "raised an exception of the notebook's own class")):
        def spy(model, num_classes, error=error):
            _replaced(model, num_classes)
            model.features[0] = nn.Sequential(Raises(error), model.features[0])
            return model

        assert said in _failure(suite.test_forward_backward, InProcess(spy))


def test_names_and_classes_the_student_chose_are_described_by_category() -> None:
    leaky = type(LEAK, (nn.Module,), {"forward": lambda self, x: x})

    def adds(model, num_classes):
        _replaced(model, num_classes)
        model.classifier.add_module(LEAK, nn.Identity())
        return model

    def registers(model, num_classes):
        _replaced(model, num_classes)
        model.register_parameter(LEAK, nn.Parameter(torch.zeros(1)))
        return model

    def own_class(model, num_classes):
        _replaced(model, num_classes)
        model.classifier[-1] = leaky()
        return model

    assert "the classifier has 1 module that the original model does not have" in \
        _failure(suite.test_last_linear_replaced, InProcess(adds))
    assert "1 parameter tensor that the original model does not have requires grad" in \
        _failure(suite.test_frozen, InProcess(registers))
    assert "is a module of a class that is not torch.nn's, expected a new nn.Linear" in \
        _failure(suite.test_last_linear_replaced, InProcess(own_class))
    assert "returned another object that is not the model it was given" in \
        _failure(suite.test_same_model, InProcess(lambda model, num_classes: leaky()))

    def features_trainable(model, num_classes):
        _replaced(model, num_classes)
        model.features.requires_grad_(True)
        model.register_parameter(LEAK, nn.Parameter(torch.zeros(1)))  # trainable, and the first parameter
        return model

    message = _failure(suite.test_frozen, InProcess(features_trainable))
    assert "e.g. features.0.weight" in message


def test_a_forged_model_is_refused_without_its_names() -> None:
    def renamed(raw):
        for row in raw["before"]["modules"]:
            row[0] = row[0].replace("features", LEAK)
        return raw

    message = _failure(suite.test_last_linear_replaced, InProcess(_replaced, renamed))
    assert "is not torchvision's vgg11" in message


def test_the_new_layer_wrapped_in_a_sequential_is_a_failed_test() -> None:
    """An honest mistake (the new Linear behind a Dropout in an nn.Sequential) fails the forward test
    with what the contract asks, rather than breaking the suite."""
    def wrapped(model, num_classes):
        for p in model.parameters():
            p.requires_grad = False
        old = model.classifier[-1]
        model.classifier[-1] = nn.Sequential(nn.Dropout(0.2),
                                             nn.Linear(old.in_features, num_classes, device=old.weight.device))
        return model

    for test in (suite.test_forward_backward, suite.test_frozen, suite.test_last_linear_replaced):
        message = _failure(test, InProcess(wrapped))
        assert "model.classifier[6] is an nn.Sequential, expected a new nn.Linear" in message
        assert "plain nn.Linear" in message


def test_a_malformed_module_transform_reply_is_the_students_failed_call() -> None:
    for forge in (lambda raw: {"modules": 1},
                  lambda raw: {**raw, "returned_id": "x"},
                  lambda raw: {**raw, "captured": {LEAK: None}},
                  lambda raw: {**raw, "after": {**raw["after"], "parameters": [
                      {**row, "dtype": LEAK} for row in raw["after"]["parameters"]]}}):
        with pytest.raises(StudentError) as caught:
            suite.test_last_linear_replaced(InProcess(_replaced, forge), torch.Generator().manual_seed(0), "meta", None)
        assert caught.value.kind == "protocol"


# --------------------------------------------------------------------------------- recurrent cells


def _gradients(forge: Callable[[dict], dict]) -> Any:
    return gru_suite.CHECKS.check_gradients(InProcess(gru_suite.SPEC.reference, forge),
                                            torch.Generator().manual_seed(0), "cpu", registry.BY_NAME["gru_cell"])


def test_why_gradients_failed_is_said_in_the_graders_words() -> None:
    for text, said in ((f"HIDDENLEAK {LEAK} 0.86722", "gradients could not be computed"),
                       (f"step 1 returned a {LEAK}, not a tensor", "the output is not a tensor")):
        with pytest.raises(GradingFailure) as caught:
            _gradients(lambda raw, text=text: {**raw, "grads": None, "grad_error": text})
        assert said in str(caught.value) and "LEAK" not in str(caught.value)


def test_a_malformed_recurrent_cell_reply_is_the_students_failed_call() -> None:
    _gradients(lambda raw: raw)  # the honest reply passes
    for forge in (lambda raw: {"outputs": [None], "inputs_after": 3},
                  lambda raw: {**raw, "grads": {"xs": []}, "grad_error": None},
                  lambda raw: {**raw, "grads": None},  # with upstream: the gradients, or why not
                  lambda raw: {**raw, "grad_error": 7},
                  lambda raw: {**raw, "inputs_after": {**raw["inputs_after"], "params": {}}}):
        with pytest.raises(StudentError) as caught:
            _gradients(forge)
        assert caught.value.kind == "protocol"


def test_recurrent_outputs_of_any_kind_are_judged_not_crashed() -> None:
    """The outputs are the student's values: a wrong one fails a comparison, never the suite."""
    for output in (None, "h", (1, 2), [torch.zeros(1)]):
        with pytest.raises(GradingFailure):
            rec.expect_outputs({"outputs": [output]}, gru_suite.SPEC, rec.make_problem(torch.Generator().manual_seed(0),
                               gru_suite.SPEC, 1, 2, 3, 4), [[torch.zeros(2, 4)]], device="cpu",
                               dtype=torch.float64, exercise=registry.BY_NAME["gru_cell"], hint="")
