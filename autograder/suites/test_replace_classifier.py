"""Hidden tests of ``replace_classifier(model, num_classes)`` (docs/exercises.md §15): a torchvision VGG
frozen, its last classifier Linear replaced by a new trainable ``Linear(in_features, num_classes)``,
the same model returned.

Runs through the ``module_transform`` harness (``autograder/worker/harness.py``): the worker builds
the VGG (``weights=None``) on the ``meta`` device, so that structure, identity and ``requires_grad``
cost nothing; one CPU (or CUDA) VGG-11 per grading, allocated with ``to_empty`` and filled cheaply,
serves the value tests (untouched weights, the forward pass and where its gradients land). The
worker reports data (module and parameter ids, types, shapes, flags, sampled values, the output,
the new layer's input, the parameters the output's autograd graph reaches and the new layer's
gradients); every verdict is made here.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from autograder.course import registry
from autograder.sandbox.session import StudentError
from autograder.grading.compare import expect, expect_close, expect_equal, expect_like, fail
from autograder.suites._common import FLOAT32, FLOAT64, dtype_text, integer, normal, run_on, seed

EXERCISE = "replace_classifier"

#: The VGG of the value tests, and those of the structural test of other VGGs (on meta).
VGG = "vgg11"
OTHER_VGGS = ("vgg16", "vgg11_bn")
#: torchvision's VGG head: classifier = [Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096),
#: ReLU, Dropout, Linear(4096, 1000)]; the last Linear is classifier.6.
LAST = "classifier.6"
FIRST = "classifier.0"
IN_FEATURES = 4096
CLASSIFIER_LENGTH = 7
#: Images of the forward pass: 32 x 32 is halved five times to 1 x 1, which the adaptive pool
#: spreads to VGG's 7 x 7; small, so that the pass costs little.
BATCH, IMAGE = 2, 32
NUM_CLASSES_RANGE = (3, 21)
#: The forward pass sums 4096 float32 products per output: its rounding, not a mistake.
FORWARD_TOLERANCE = registry.Tolerance(rtol=1e-5, atol=1e-4)
LINEAR = "torch.nn.modules.linear.Linear"

HINT_REPLACE = ("the last Linear of model.classifier (index 6 in torchvision's VGGs, or model.classifier[-1]) must be "
                "replaced by a new nn.Linear(model.classifier[-1].in_features, num_classes): "
                "model.classifier[-1] = nn.Linear(...)")
HINT_FREEZE = ("set requires_grad = False on every existing parameter (for p in model.parameters(): "
               "p.requires_grad = False) first, then add the new layer, whose parameters require grad")
HINT_SAME = ("modify the model you are given and return it (return model): the caller keeps using that object, "
             "so a copy or a new network leaves the caller's model unchanged")
HINT_UNTOUCHED = ("change nothing but the last Linear: keep every other module and parameter (no re-creating or "
                  "re-initialising layers, no copies of the model)")
HINT_FORWARD = ("after replace_classifier the model must map images to num_classes scores through the frozen "
                "network and the new last layer")
HINT_GRADIENTS = "only the new layer may receive gradients: " + HINT_FREEZE
HINT_DEVICE = ("create the new layer on the old one's device and dtype: nn.Linear(..., device=old.weight.device, "
               "dtype=old.weight.dtype) (or .to(old.weight))")

#: Results of the one real-valued VGG call of each grading: StudentSession -> {hash of its cells: result
#: or StudentError} (a session whose code changes, as in the project's tests, gets a new call).
_REAL: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------------ runs


def _args(rng: torch.Generator, num_classes: int, builder: str, dtype=FLOAT32) -> dict[str, Any]:
    inputs = normal(rng, BATCH, 3, IMAGE, IMAGE).to(dtype)
    return {"builder": builder, "call_args": [num_classes], "dtype": dtype_text(dtype), "seed": seed(rng),
            "inputs": inputs, "upstream": normal(rng, BATCH, num_classes).to(dtype), "capture": [LAST],
            "whole": [f"{LAST}.weight", f"{LAST}.bias"]}


def _run(student, rng, builder: str, device: str, dtype=FLOAT32, *,
         propagation: bool = False) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """One call on a fresh ``builder`` model on ``device``. Structural tests run on ``meta`` as
    their own device (an error is the student's, a stub is "not implemented"); with
    ``propagation`` an error is reported as one of that device (None: an inconclusive meta run)."""
    num_classes = integer(rng, *NUM_CLASSES_RANGE)
    args = _args(rng, num_classes, builder, dtype)
    if propagation:
        result = run_on(student, EXERCISE, args, device)
    else:
        result = student.run(EXERCISE, args, device=device)
    return None if result is None else (result, args)


def _real(student, rng, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grading's one real-valued VGG-11 call (its result, or its error, is reused while the
    session runs the same code)."""
    cache = _REAL.setdefault(student, {})
    code = hash(tuple(getattr(cell, "source", "") for cell in getattr(student, "cells", ())))
    if code not in cache:
        try:
            cache[code] = _run(student, rng, VGG, device)
        except StudentError as error:
            cache[code] = error
    value = cache[code]
    if isinstance(value, StudentError):
        raise value
    return value


# ------------------------------------------------------------------------------------- reading


def _modules(table: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {str(name): (str(kind), int(ident)) for name, kind, ident in table["modules"]}


def _parameters(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(row["name"]): row for row in table["parameters"]}


def _is_new(name: str) -> bool:
    return name == LAST or name.startswith(LAST + ".")


def _diagnosis(result: dict[str, Any], num_classes: int) -> str | None:
    """A known mistake that explains the structure the worker reported, if any."""
    before, after = _modules(result["before"]), _modules(result["after"])
    params = _parameters(result["after"])
    if result["returned_id"] != result["model_id"]:
        return ("returns another object than the model it was given, whose classifier is unchanged: " + HINT_SAME)
    added = sorted(set(after) - set(before))
    if "fc" in added:
        return ("a new model.fc: that is the head of a ResNet; a VGG's head is model.classifier, whose last Linear "
                "must be replaced: " + HINT_REPLACE)
    length = len([n for n in after if n.startswith("classifier.") and n.count(".") == 1])
    if length > CLASSIFIER_LENGTH:
        return ("a layer appended after the old 1000-way layer instead of replacing it: " + HINT_REPLACE)
    if length < CLASSIFIER_LENGTH:
        return ("the whole classifier replaced: keep its first six modules (they hold pretrained weights) and replace "
                "only the last Linear: " + HINT_REPLACE)
    if FIRST in after and after[FIRST][1] != before[FIRST][1]:
        return ("the first Linear of the classifier replaced (classifier[0], 25088 -> 4096) instead of the last one "
                "(classifier[-1], 4096 -> 1000): " + HINT_REPLACE)
    if LAST in after and after[LAST][1] == before[LAST][1]:
        weight = params.get(f"{LAST}.weight")
        if weight is not None and weight["shape"][0] == num_classes:
            return ("the old last layer kept and given new weights: the contract asks for a new nn.Linear module in "
                    "its place: " + HINT_REPLACE)
        return "the last Linear left as it was (still 1000 outputs): " + HINT_REPLACE
    return None


def _expect_structure(result: dict[str, Any], num_classes: int, what: str) -> None:
    before, after = _modules(result["before"]), _modules(result["after"])
    params = _parameters(result["after"])
    diagnosis = _diagnosis(result, num_classes)
    hint = diagnosis or HINT_REPLACE
    new = after.get(LAST)
    expect(new is not None and new[0] == LINEAR, f"{what}: model.classifier[6] is "
           f"{'missing' if new is None else 'a ' + new[0].rsplit('.', 1)[-1]}, expected a new nn.Linear", hint=hint)
    expect(new[1] != before[LAST][1], f"{what}: model.classifier[6] is still the old layer object", hint=hint)
    weight, bias = params.get(f"{LAST}.weight"), params.get(f"{LAST}.bias")
    expect(weight is not None and weight["shape"] == [num_classes, IN_FEATURES],
           f"{what}: the new layer's weight has shape {None if weight is None else tuple(weight['shape'])}, expected "
           f"({num_classes}, {IN_FEATURES}) for num_classes = {num_classes}",
           hint=diagnosis or "nn.Linear(in_features, num_classes) with in_features = 4096, the old layer's input size")
    expect(bias is not None and bias["shape"] == [num_classes], f"{what}: the new layer has no bias of shape "
           f"({num_classes},)", hint="keep nn.Linear's default bias=True")
    for name, (kind, ident) in before.items():
        if name.startswith("classifier.") and not _is_new(name):
            expect(name in after and after[name] == (kind, ident),
                   f"{what}: model.{name} ({kind.rsplit('.', 1)[-1]}) was replaced or removed", hint=hint)
    extra = [n for n in after if n.startswith("classifier.") and n not in before]
    expect(not extra, f"{what}: the classifier has modules it did not have before ({', '.join(extra[:3])})", hint=hint)


def _expect_frozen(result: dict[str, Any], what: str) -> None:
    params = _parameters(result["after"])
    old = [n for n in params if not _is_new(n)]
    trainable = [n for n in old if params[n]["requires_grad"]]
    if trainable:
        if len(trainable) == len(old):
            message = f"{what}: every parameter of the pretrained network still requires grad (the whole VGG " \
                      "left trainable)"
        elif all(n.startswith("features.") for n in trainable):
            message = f"{what}: the convolutional features ({len(trainable)} tensors, e.g. {trainable[0]}) still " \
                      "require grad: only the classifier was frozen"
        else:
            message = f"{what}: {len(trainable)} pretrained parameter tensors still require grad (e.g. {trainable[0]})"
        fail(message, hint=HINT_FREEZE)
    for name in (f"{LAST}.weight", f"{LAST}.bias"):
        row = params.get(name)
        expect(row is not None and row["requires_grad"], f"{what}: the new layer's {name.rsplit('.', 1)[-1]} does not "
               "require grad, so it cannot be trained (frozen after it was added?)", hint=HINT_FREEZE)


# ----------------------------------------------------------------------------------------- tests


def test_same_model(student, rng, device, exercise):
    result, args = _run(student, rng, VGG, "meta")
    expect(result["returned_id"] == result["model_id"],
           f"replace_classifier returned {'None' if result['returned_type'] == 'builtins.NoneType' else 'a ' + result['returned_type'].rsplit('.', 1)[-1]} "
           "that is not the model it was given", hint=HINT_SAME)
    _expect_structure(result, args["call_args"][0], "the model after the call")


def test_last_linear_replaced(student, rng, device, exercise):
    result, args = _run(student, rng, VGG, "meta")
    _expect_structure(result, args["call_args"][0], "VGG-11")


def test_frozen(student, rng, device, exercise):
    result, args = _run(student, rng, VGG, "meta")
    _expect_frozen(result, "VGG-11")
    _expect_structure(result, args["call_args"][0], "VGG-11")


def test_untouched(student, rng, device, exercise):
    result, args = _real(student, rng, device)
    before, after = _modules(result["before"]), _modules(result["after"])
    for name, (kind, ident) in before.items():
        if name and not _is_new(name):
            expect(after.get(name) == (kind, ident), f"model.{name} ({kind.rsplit('.', 1)[-1]}) is no longer the "
                   "same module object", hint=_diagnosis(result, args["call_args"][0]) or HINT_UNTOUCHED)
    old, new = _parameters(result["before"]), _parameters(result["after"])
    for name, row in old.items():
        if _is_new(name):
            continue
        now = new.get(name)
        expect(now is not None and now["id"] == row["id"], f"parameter {name} is no longer the same tensor object",
               hint=_diagnosis(result, args["call_args"][0]) or HINT_UNTOUCHED)
        expect_equal(now["sample"], row["sample"], quantity=f"values of {name} (at sampled positions)",
                     hint=HINT_UNTOUCHED)
    _expect_structure(result, args["call_args"][0], "the model after the call")


def test_forward_backward(student, rng, device, exercise):
    result, args = _real(student, rng, device)
    num_classes = args["call_args"][0]
    if result["forward_error"]:
        fail(f"the model's forward pass failed after replace_classifier: {result['forward_error']}",
             hint=_diagnosis(result, num_classes) or HINT_FORWARD)
    output = expect_like(result["output"], shape=(BATCH, num_classes), dtype=FLOAT32, device=device,
                         quantity=f"model(X) for X of shape ({BATCH}, 3, {IMAGE}, {IMAGE})",
                         hint=_diagnosis(result, num_classes) or HINT_FORWARD)
    features = result["captured"].get(LAST)
    params = _parameters(result["after"])
    weight, bias = params[f"{LAST}.weight"]["value"], params[f"{LAST}.bias"]["value"]
    if features is None or weight is None or bias is None:
        fail("the forward pass did not go through model.classifier[6]", hint=HINT_REPLACE)
    a = features.detach().cpu().to(FLOAT64)
    expected = a @ weight.cpu().to(FLOAT64).T + bias.cpu().to(FLOAT64)
    expect_close(output, expected.to(device, FLOAT32), quantity="model(X): the new layer applied to the frozen "
                 "network's 4096 features", tol=FORWARD_TOLERANCE, hint=HINT_FORWARD)
    grads = result["grads"]
    reached = [n for n in result["reached"] if not _is_new(n)]
    expect(not reached, f"a backward pass from model(X) would give gradients to {len(reached)} pretrained "
           f"parameter tensors (e.g. {reached[0] if reached else ''}): they received gradients", hint=HINT_GRADIENTS)
    upstream = args["upstream"].to(FLOAT64)
    for name, want in ((f"{LAST}.weight", upstream.T @ a), (f"{LAST}.bias", upstream.sum(0))):
        got = grads.get(name)
        if got is None:
            fail(f"after a backward pass the new layer's {name.rsplit('.', 1)[-1]} has no gradient", hint=HINT_FREEZE)
        expect_close(got, want.to(device, FLOAT32), quantity=f"gradient of the new layer's {name.rsplit('.', 1)[-1]}",
                     tol=FORWARD_TOLERANCE, hint=HINT_FORWARD)


def test_other_vggs(student, rng, device, exercise):
    for builder in OTHER_VGGS:
        result, args = _run(student, rng, builder, "meta")
        num_classes = args["call_args"][0]
        _expect_structure(result, num_classes, builder)
        _expect_frozen(result, builder)
        params = _parameters(result["after"])
        if any(params[f"{LAST}.{k}"]["device"] != "meta" for k in ("weight", "bias")):
            continue  # a new layer on another device than the model's is test_device's finding alone
        if result["forward_error"]:
            fail(f"{builder}: the forward pass failed after replace_classifier: {result['forward_error']}",
                 hint=_diagnosis(result, num_classes) or HINT_FORWARD)
        expect_like(result["output"], shape=(BATCH, num_classes), dtype=FLOAT32, device="meta",
                    quantity=f"{builder}: model(X)", hint=HINT_FORWARD)


def test_device(student, rng, device, propagation_devices, exercise):
    # the value device first (the grading's real VGG, already built): a stub is "not implemented"
    wheres = [(device, FLOAT32), ("meta", FLOAT64), ("meta", FLOAT32)]
    wheres += [(d, FLOAT32) for d in propagation_devices if d not in ("meta", device)]
    for where, dtype in wheres:
        run = _real(student, rng, device) if where == device else _run(student, rng, VGG, where, dtype, propagation=True)
        if run is None:
            continue
        result, args = run
        what = f"a {dtype_text(dtype)} VGG-11 on {where}"
        params = _parameters(result["after"])
        for name in (f"{LAST}.weight", f"{LAST}.bias"):
            row = params.get(name)
            expect(row is not None, f"{what}: the new layer has no {name.rsplit('.', 1)[-1]}", hint=HINT_REPLACE)
            expect(row["dtype"] == dtype_text(dtype) and row["device"] == torch.device(where).type,
                   f"{what}: the new layer's {name.rsplit('.', 1)[-1]} is {row['dtype']} on {row['device']}",
                   hint=HINT_DEVICE)
        if result["forward_error"]:
            fail(f"{what}: the forward pass failed after replace_classifier: {result['forward_error']}",
                 hint=HINT_DEVICE)
        expect_like(result["output"], shape=(BATCH, args["call_args"][0]), dtype=dtype, device=where,
                    quantity=f"{what}: model(X)", hint=HINT_DEVICE)
