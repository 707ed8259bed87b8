"""The reference ``replace_classifier`` on torchvision's own VGGs (``weights=None``: no download).

Structure and identity are checked on models built on the ``meta`` device (no memory, no
initialisation cost); the forward/backward pass on one CPU VGG-11 whose parameters are allocated
with ``to_empty`` and filled cheaply (the default initialisation of 133 M parameters costs a second
and says nothing here). The new head is checked against the frozen network's own features: the
output is ``a W^T + b`` for the 4096 features ``a`` that ``classifier[:-1]`` computes, and the
gradient reaches the new layer only.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models

from reference.transfer import replace_classifier

#: (name, builder) of the torchvision VGGs checked structurally.
VGGS = (("vgg11", models.vgg11), ("vgg16", models.vgg16), ("vgg11_bn", models.vgg11_bn))
NUM_CLASSES = 5


def on_meta(build, dtype=torch.float32) -> nn.Module:
    with torch.device("meta"):
        return build(weights=None).to(dtype)


def cheap_cpu_vgg11() -> nn.Module:
    """A CPU VGG-11 with small uniform parameters: a stable forward pass at a fraction of the
    default initialisation's cost."""
    model = on_meta(models.vgg11).to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            bound = (3.0 / max(1, p[0].numel() if p.dim() > 1 else 1)) ** 0.5
            p.uniform_(-bound, bound, generator=gen)
    return model


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=("float32", "float64"))
@pytest.mark.parametrize("name, build", VGGS, ids=[n for n, _ in VGGS])
def test_replaces_only_the_last_linear_and_freezes_the_rest(name, build, dtype):
    model = on_meta(build, dtype)
    modules = dict(model.named_modules())
    parameters = dict(model.named_parameters())
    last = max(i for i, m in enumerate(model.classifier) if isinstance(m, nn.Linear))
    old = model.classifier[last]

    returned = replace_classifier(model, NUM_CLASSES)

    assert returned is model
    new = model.classifier[last]
    assert type(new) is nn.Linear and new is not old
    assert (new.in_features, new.out_features) == (old.in_features, NUM_CLASSES) == (4096, NUM_CLASSES)
    assert new.bias is not None and tuple(new.bias.shape) == (NUM_CLASSES,)
    for p in new.parameters():
        assert p.requires_grad and p.device.type == "meta" and p.dtype == dtype
    replaced = f"classifier.{last}"
    after = dict(model.named_modules())
    assert set(after) == set(modules)
    for key, module in modules.items():
        if key != replaced:
            assert after[key] is module, f"{name}: module {key!r} is no longer the same object"
    after_params = dict(model.named_parameters())
    assert set(after_params) == set(parameters)
    for key, p in parameters.items():
        if not key.startswith(replaced + "."):
            assert after_params[key] is p and not p.requires_grad, f"{name}: parameter {key} not frozen in place"
    assert len(model.classifier) == len(modules["classifier"]) == 7


def test_forward_and_backward_reach_only_the_new_head():
    model = cheap_cpu_vgg11()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    replace_classifier(model, NUM_CLASSES)
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(2, 3, 32, 32, generator=gen)  # 32 / 2^5 = 1: the adaptive pool spreads it to 7x7
    model.eval()  # no dropout: the features below are computed again
    features = {}
    model.classifier[-1].register_forward_hook(lambda module, args, out: features.update(a=args[0].detach()))
    Y = model(X)
    assert Y.shape == (2, NUM_CLASSES) and Y.requires_grad
    a, head = features["a"], model.classifier[-1]
    with torch.no_grad():
        expected_a = model.classifier[:-1](torch.flatten(model.avgpool(model.features(X)), 1))
    torch.testing.assert_close(a, expected_a)
    torch.testing.assert_close(Y.detach(), a @ head.weight.detach().T + head.bias.detach())
    upstream = torch.randn(Y.shape, generator=gen)
    Y.backward(upstream)
    for key, p in model.named_parameters():
        if key.startswith("classifier.6."):
            assert p.grad is not None
        else:
            assert p.grad is None, f"a gradient reached the frozen {key}"
    torch.testing.assert_close(head.weight.grad, upstream.T @ a)
    torch.testing.assert_close(head.bias.grad, upstream.sum(0))
    for key, value in model.state_dict().items():
        if not key.startswith("classifier.6."):
            assert torch.equal(value, before[key]), f"{key} changed"
