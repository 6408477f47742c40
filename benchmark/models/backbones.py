"""One door for every backbone: `create_backbone(spec, num_classes)` over timm's registry.

Small inputs: timm's ImageNet architectures are used unchanged (so their pretrained weights
still apply) and see the suite's image size as it is. At 32 px an ImageNet stem shrinks the
image to 1x1 by the last stage (resnet18: 16, 8, 4, 2, 1), which is enough for digits; a ViT
is given the size and a patch size through the spec's kwargs (`img_size: 32, patch_size: 4`).
"""

from __future__ import annotations

import fnmatch

import timm
from torch import nn

from benchmark.config import BackboneSpec
from benchmark.errors import XdkdError
from benchmark.registry import unknown_name_message

DIGIT_BACKBONES = ("lenet", "dtn")


def backbone_names(pattern: str = "*") -> list[str]:
    """Every backbone name matching a glob pattern: the digit CNNs first, then timm's."""
    digit = [name for name in DIGIT_BACKBONES if fnmatch.fnmatch(name, pattern)]
    others = [name for name in timm.list_models(pattern) if name not in DIGIT_BACKBONES]
    return digit + others


def check_backbone_name(name: str) -> str:
    if not timm.is_model(name):
        raise XdkdError(unknown_name_message("backbone", name, timm.list_models()))
    return name


def create_backbone(spec: BackboneSpec, num_classes: int) -> nn.Module:
    """A timm model with a fresh `num_classes` head (no weights are ever downloaded)."""
    check_backbone_name(spec.name)
    if spec.pretrained:
        raise XdkdError(
            f"backbone '{spec.name}': pretrained weights are not supported yet; "
            "set pretrained: false"
        )
    try:
        return timm.create_model(
            spec.name, pretrained=False, num_classes=num_classes, **spec.kwargs
        )
    except TypeError as error:
        raise XdkdError(
            f"backbone '{spec.name}' rejected its kwargs {sorted(spec.kwargs)}: {error}"
        ) from None
