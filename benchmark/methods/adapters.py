"""What the feature methods share: probing shapes, matching stages, resizing maps, adapters.

Stage matching. Networks differ in how many stages they expose (`lenet` 2, `dtn` 3,
`resnet18` 5 counting its stem, a ViT one per block), so stages are paired by relative depth:
the network with fewer stages, n of them, uses every one, its k-th (k = 1..n) at depth k/n,
and each is paired with the other network's stage at the same relative depth, index
ceil(k/n * count) - 1. The last stages always pair up, no stage of the shallower network is
left out, and one middle stage (FitNet's hint) is the stage at depth 1/2 of each network.
Example: `lenet` (2) with `resnet18` (5) pairs stages (0, 2) and (1, 4).

Stems. AT, NST, AB and ReviewKD follow their authors' and peers' code (RepDistiller's
`feat[1:-1]`, mdistiller's `feats[1:]`, the ReviewKD authors' `t_features[1:]`), which leaves
the stem out: the output of the input layer (conv, BN, activation) ahead of the first stage,
not one of the network's stages. They pair stages with `stage_pairs`, over the networks' body
stages (`body_stages`): every exposed stage but a stem at index 0. (VID and ZSKT still pair
every exposed stage: `match_stages`, `spatial_pairs` without `without_stem`.) A stage is a
stem when timm's `feature_info` names its module so (`is_stem`): `stem` or a part of it
(RegNet, ResNetV2, CSPNet, NFNet, RepVGG, HRNet, VoVNet: `stem`, `stem.conv`; GhostNet's
`conv_stem`), or the stem layer timm exposes by its own name (the ResNet family's `act1`,
after conv1 and bn1: `resnet18`, `resnet10t`, `resnet50`; DenseNet's `features.norm0`; DPN's
`features.conv1_1`). The digit CNNs' first stage (`stages.0`: conv, BN, ReLU, the first of
their two or three), a ViT's first block and EfficientNet's or MobileNet's first block
(`blocks.0`, after their unexposed `conv_stem`) are body stages and stay. A network that
exposes one stage keeps it, stem or not.

Spatial sizes are matched by `resize_to` (adaptive average pooling down, bilinear up), and
channel counts by a 1x1 conv + BN adapter sized from the shapes a probe forward produced,
so no teacher/student pair needs shape settings of its own.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch
from benchmark.methods.parts import probe_outputs
from benchmark.methods.teachers import Teachers
from benchmark.models.features import ModelOutputs

MIDDLE = Fraction(1, 2)


def stage_at_depth(count: int, depth: Fraction) -> int:
    """Index of the stage at relative depth `depth` (0 < depth <= 1) of `count` stages."""
    return max(0, math.ceil(depth * count) - 1)


def match_stages(student_count: int, teacher_count: int) -> list[tuple[int, int]]:
    """(student stage, teacher stage) pairs at equal relative depths, shallow to deep."""
    pairs = min(student_count, teacher_count)
    depths = [Fraction(k, pairs) for k in range(1, pairs + 1)]
    return [(stage_at_depth(student_count, d), stage_at_depth(teacher_count, d)) for d in depths]


STEM_MODULES = ("act1", "features.norm0", "features.conv1_1")


def is_stem(module: str) -> bool:
    """Whether a `feature_info` module name is a network's stem (see the module docstring)."""
    return module in STEM_MODULES or any("stem" in part for part in module.split("."))


def body_stages(model: nn.Module, count: int) -> list[int]:
    """The indices of a network's `count` exposed stages that are not its stem: all of them
    but index 0 where timm's `feature_info` (one entry per exposed stage) names that stage a
    stem, and all of them where the network exposes one stage or no matching `feature_info`."""
    info = getattr(model, "feature_info", None)
    entries = info.get_dicts() if hasattr(info, "get_dicts") else list(info or [])
    stem = count > 1 and len(entries) == count and is_stem(str(entries[0].get("module", "")))
    return list(range(1 if stem else 0, count))


def stage_pairs(
    student: nn.Module,
    teacher: Teachers,
    student_probe: ModelOutputs,
    teacher_probe: ModelOutputs,
) -> list[tuple[int, int]]:
    """(student stage, teacher stage) pairs, shallow to deep: `match_stages` over the two
    networks' body stages (`body_stages`: the stem left out), in each network's own indices."""
    student_body = body_stages(student, len(student_probe.stages))
    teacher_body = body_stages(teacher.module(), len(teacher_probe.stages))
    return [
        (student_body[s], teacher_body[t])
        for s, t in match_stages(len(student_body), len(teacher_body))
    ]


def resize_to(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an NCHW map to `size`: average-pool when shrinking (no detail is invented),
    bilinear interpolation when growing."""
    height, width = feature.shape[-2:]
    if (height, width) == tuple(size):
        return feature
    if height >= size[0] and width >= size[1]:
        return F.adaptive_avg_pool2d(feature, size)
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)


def smaller_size(first: torch.Tensor, second: torch.Tensor) -> tuple[int, int]:
    """The spatial size both maps can be pooled down to."""
    return (min(first.shape[-2], second.shape[-2]), min(first.shape[-1], second.shape[-1]))


def conv_adapter(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 1x1 conv + BN mapping one network's channels onto the other's (FitNet's regressor)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def probe_pair(
    student: nn.Module, teacher: Teachers, batch: Batch
) -> tuple[ModelOutputs, ModelOutputs]:
    """Student and teacher outputs on two images of the probe batch (shapes need no more)."""
    images = batch.all_images()[:2]
    return probe_outputs(student, images), teacher.outputs(images)


def spatial_pairs(
    student: nn.Module,
    teacher: Teachers,
    batch: Batch,
    method: str,
    what: str,
    without_stem: bool = False,
) -> list[tuple[int, int]]:
    """The matched stage pairs (`stage_pairs`, the stems left out, with `without_stem`; else
    `match_stages` over every exposed stage) whose common size is larger than 1x1: a map of
    one pixel normalises to the same value whatever the features, so a method comparing
    spatial maps (AT's attention, NST's neuron selectivity) has nothing to match there."""
    student_probe, teacher_probe = probe_pair(student, teacher, batch)
    matched = (
        stage_pairs(student, teacher, student_probe, teacher_probe)
        if without_stem
        else match_stages(len(student_probe.stages), len(teacher_probe.stages))
    )
    pairs = [
        (s, t)
        for s, t in matched
        if smaller_size(student_probe.stages[s], teacher_probe.stages[t]) != (1, 1)
    ]
    if not pairs:
        raise XdkdError(
            f"{method}: every matched stage pair is 1x1 at this image size, so no {what} to "
            "transfer; use larger images or a feature method on pooled features"
        )
    return pairs
