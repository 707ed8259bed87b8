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

Everything the worker reports is the student's data (their process wrote it), and a student who
reaches the hidden images can encode them in any text the feedback repeats. So the feedback names
only what the grader itself knows: the modules and parameters of its own copy of the untouched
torchvision model (:func:`_original`, which the reported model before the call must match), torch's
own module classes, counts and shapes; a module, parameter or class the student made is described
by its category ("1 module that the original model does not have", "not an nn.Linear"), and an
exception raised in the forward pass by its type when built in (``ModuleTransform.facts``).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

import torch
# Imported with the suite (about a second): a cold grading collects only its own exercises' suites,
# and a batch collects every suite once while its sandboxes start, so no grading waits for it.
import torchvision

from autograder.course import registry
from autograder.sandbox.session import StudentError
from autograder.grading.compare import GradingFailure, expect, expect_close, expect_equal, expect_like, fail
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
HINT_CONTAINER = ("the new last layer is a container of several modules (e.g. nn.Sequential(nn.Dropout(...), "
                  "nn.Linear(...))): the contract asks for a plain nn.Linear in place of the old one, "
                  "model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes) (the classifier "
                  "already has its dropout layers)")
HINT_ORIGINAL = ("the model replace_classifier received was not torchvision's: leave torchvision and the grader's "
                 "code alone (no patching of torchvision.models or of the grader's modules from the notebook)")
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
    if result is None:
        return None
    _expect_original(result, builder)
    return result, args


def _real(student, rng, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grading's one real-valued VGG-11 call (its result, or its error, is reused while the
    session runs the same code)."""
    cache = _REAL.setdefault(student, {})
    code = hash(tuple(getattr(cell, "source", "") for cell in getattr(student, "cells", ())))
    if code not in cache:
        try:
            cache[code] = _run(student, rng, VGG, device)
        except (StudentError, GradingFailure) as error:
            cache[code] = error
    value = cache[code]
    if isinstance(value, (StudentError, GradingFailure)):
        raise value
    return value


# ------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Original:
    """The grader's own copy of an untouched torchvision model: its module names and classes (as
    the worker reports them) and its parameter names and shapes."""

    modules: dict[str, str]
    parameters: dict[str, list[int]]


@functools.cache
def _original(builder: str) -> Original:
    with torch.device("meta"):  # no memory, no initialisation
        model = getattr(torchvision.models, builder)(weights=None)
    return Original({name: _class_name(type(m)) for name, m in model.named_modules()},
                    {name: list(p.shape) for name, p in model.named_parameters()})


def _class_name(cls: type) -> str:
    """A class as the worker names it (``_type_name`` in ``autograder/worker/harness.py``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


#: torch.nn's module classes, by the name the worker reports: the only classes feedback names.
_NN = {_class_name(c): f"nn.{c.__name__}" for c in vars(torch.nn).values()
       if isinstance(c, type) and issubclass(c, torch.nn.Module)}


def _expect_original(result: dict[str, Any], builder: str) -> None:
    """The model the worker reports before the call is the grader's own copy of torchvision's
    ``builder``: then the names of ``result["before"]`` are the grader's to repeat. (The notebook's
    code can patch torchvision or the harness; a model that differs is named by category only.)"""
    original = _original(builder)
    modules = {name: kind for name, kind, _ in result["before"]["modules"]}
    params = {row["name"]: row["shape"] for row in result["before"]["parameters"]}
    expect(modules == original.modules and params == original.parameters
           and len(result["before"]["modules"]) == len(modules) and len(result["before"]["parameters"]) == len(params),
           f"the model replace_classifier received is not torchvision's {builder}: its modules or parameters "
           "differ from those of the model the grader built", hint=HINT_ORIGINAL)


def _module_text(kind: str) -> str:
    """A module's class as feedback may say it: torch.nn's by name, any other by category (the
    student chose its name)."""
    return f"an {_NN[kind]}" if kind in _NN else "a module of a class that is not torch.nn's"


def _known(names: list[str], original: dict[str, Any], what: str) -> str:
    """The first of ``names`` that the original model has, else ``what`` (a name the student chose)."""
    return next((n for n in names if n in original), what)


def _returned_text(kind: str) -> str:
    """What the function returned, as feedback may say it (its class is the student's to name)."""
    if kind == "builtins.NoneType":
        return "None"
    if kind in _original(VGG).modules.values():
        return "a " + kind.rsplit(".", 1)[-1]  # torchvision's VGG: a copy of the model
    return _module_text(kind) if kind in _NN else "another object"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _values(value: Any, shape: tuple[int, ...]) -> bool:
    """A tensor of values (not on meta) of ``shape``, as the forward pass's arithmetic needs."""
    return type(value) is torch.Tensor and value.device.type != "meta" and tuple(value.shape) == shape


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
        if weight is not None and weight["shape"][:1] == [num_classes]:
            return ("the old last layer kept and given new weights: the contract asks for a new nn.Linear module in "
                    "its place: " + HINT_REPLACE)
        return "the last Linear left as it was (still 1000 outputs): " + HINT_REPLACE
    if LAST in after and after[LAST][0] != LINEAR and any(n.startswith(LAST + ".") for n in after):
        return HINT_CONTAINER
    return None


def _expect_structure(result: dict[str, Any], num_classes: int, what: str) -> None:
    before, after = _modules(result["before"]), _modules(result["after"])
    params = _parameters(result["after"])
    diagnosis = _diagnosis(result, num_classes)
    hint = diagnosis or HINT_REPLACE
    new = after.get(LAST)
    expect(new is not None and new[0] == LINEAR, f"{what}: model.classifier[6] is "
           f"{'missing' if new is None else _module_text(new[0])}, expected a new nn.Linear", hint=hint)
    expect(new[1] != before[LAST][1], f"{what}: model.classifier[6] is still the old layer object", hint=hint)
    weight, bias = params.get(f"{LAST}.weight"), params.get(f"{LAST}.bias")
    expect(weight is not None and weight["shape"] == [num_classes, IN_FEATURES],
           f"{what}: the new layer's weight has shape {None if weight is None else tuple(weight['shape'])}, expected "
           f"({num_classes}, {IN_FEATURES}) for num_classes = {num_classes}",
           hint=diagnosis or "nn.Linear(in_features, num_classes) with in_features = 4096, the old layer's input size")
    expect(bias is not None and bias["shape"] == [num_classes], f"{what}: the new layer has no bias of shape "
           f"({num_classes},)", hint="keep nn.Linear's default bias=True")
    for name, (kind, ident) in before.items():  # the original's names and classes (_expect_original)
        if name.startswith("classifier.") and not _is_new(name):
            expect(name in after and after[name] == (kind, ident),
                   f"{what}: model.{name} ({kind.rsplit('.', 1)[-1]}) was replaced or removed", hint=hint)
    extra = [n for n in after if n.startswith("classifier.") and n not in before]
    expect(not extra, f"{what}: the classifier has {_count(len(extra), 'module')} that the original model does not "
           "have", hint=hint)


def _expect_frozen(result: dict[str, Any], what: str) -> None:
    params = _parameters(result["after"])
    original = _parameters(result["before"])  # the original's names (_expect_original)
    old = [n for n in original if not _is_new(n) and n in params]
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
    added = [n for n in params if n not in original and not _is_new(n) and params[n]["requires_grad"]]
    expect(not added, f"{what}: {_count(len(added), 'parameter tensor')} that the original model does not have "
           f"{'requires' if len(added) == 1 else 'require'} grad", hint=HINT_UNTOUCHED)
    for name in (f"{LAST}.weight", f"{LAST}.bias"):  # a new layer without them is _expect_structure's finding
        row = params.get(name)
        expect(row is None or row["requires_grad"], f"{what}: the new layer's {name.rsplit('.', 1)[-1]} does not "
               "require grad, so it cannot be trained (frozen after it was added?)", hint=HINT_FREEZE)


# ----------------------------------------------------------------------------------------- tests


def test_same_model(student, rng, device, exercise):
    result, args = _run(student, rng, VGG, "meta")
    expect(result["returned_id"] == result["model_id"],
           f"replace_classifier returned {_returned_text(result['returned_type'])} that is not the model it was given",
           hint=HINT_SAME)
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
        fail(f"the model's forward pass raised {result['forward_error']} after replace_classifier",
             hint=_diagnosis(result, num_classes) or HINT_FORWARD)
    output = expect_like(result["output"], shape=(BATCH, num_classes), dtype=FLOAT32, device=device,
                         quantity=f"model(X) for X of shape ({BATCH}, 3, {IMAGE}, {IMAGE})",
                         hint=_diagnosis(result, num_classes) or HINT_FORWARD)
    params = _parameters(result["after"])
    rows = params.get(f"{LAST}.weight"), params.get(f"{LAST}.bias")
    if [None if row is None else row["shape"] for row in rows] != [[num_classes, IN_FEATURES], [num_classes]]:
        _expect_structure(result, num_classes, "the model after the call")  # says what the last layer is instead
        fail("model.classifier[6] has no weight and bias of a new nn.Linear", hint=HINT_REPLACE)
    features, weight, bias = result["captured"].get(LAST), rows[0]["value"], rows[1]["value"]
    if not (_values(features, (BATCH, IN_FEATURES)) and _values(weight, (num_classes, IN_FEATURES))
            and _values(bias, (num_classes,))):
        fail("the forward pass did not go through model.classifier[6]", hint=HINT_REPLACE)
    a = features.detach().cpu().to(FLOAT64)
    expected = a @ weight.cpu().to(FLOAT64).T + bias.cpu().to(FLOAT64)
    expect_close(output, expected.to(device, FLOAT32), quantity="model(X): the new layer applied to the frozen "
                 "network's 4096 features", tol=FORWARD_TOLERANCE, hint=HINT_FORWARD)
    grads = result["grads"]
    reached = [n for n in result["reached"] if not _is_new(n)]
    example = _known(reached, _parameters(result["before"]), "one the original model does not have")
    expect(not reached, f"a backward pass from model(X) would give gradients to {len(reached)} pretrained "
           f"parameter tensors (e.g. {example}): they received gradients", hint=HINT_GRADIENTS)
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
            fail(f"{builder}: the forward pass raised {result['forward_error']} after replace_classifier",
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
            fail(f"{what}: the forward pass raised {result['forward_error']} after replace_classifier",
                 hint=HINT_DEVICE)
        expect_like(result["output"], shape=(BATCH, args["call_args"][0]), dtype=dtype, device=where,
                    quantity=f"{what}: model(X)", hint=HINT_DEVICE)
