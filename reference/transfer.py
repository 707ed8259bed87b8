"""Transfer learning with torchvision: a pretrained VGG's head swapped for a new task."""

from torch import nn


def replace_classifier(model, num_classes):
    """Freeze a torchvision VGG and give it a new, trainable last layer, in place.

    Every existing parameter gets requires_grad = False; the **last** nn.Linear of
    ``model.classifier`` (4096 -> 1000 in torchvision's VGGs) is replaced by a new
    nn.Linear(in_features, num_classes) on the old layer's device and dtype. Every other module
    and parameter stays the very same object with the same values; the same model is returned.
    Training then updates only the new layer: y = W a + b with a the 4096 features the frozen
    network computes.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    classifier = model.classifier
    last = max(i for i, module in enumerate(classifier) if isinstance(module, nn.Linear))
    old = classifier[last]
    classifier[last] = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    return model
