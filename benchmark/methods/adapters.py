"""What the feature methods share: probing shapes, matching stages, resizing maps, adapters.

Stage matching. Networks differ in how many stages they expose (`lenet` 2, `dtn` 3,
`resnet18` 5 counting its stem, a ViT one per block), so stages are paired by relative depth:
the network with fewer stages, n of them, uses every one, its k-th (k = 1..n) at depth k/n,
and each is paired with the other network's stage at the same relative depth, index
ceil(k/n * count) - 1. The last stages always pair up, no stage of the shallower network is
left out, and one middle stage (FitNet's hint) is the stage at depth 1/2 of each network.
Example: `lenet` (2) with `resnet18` (5) pairs stages (0, 2) and (1, 4).

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
from benchmark.models.features import ModelOutputs
from benchmark.teachers import Teachers

MIDDLE = Fraction(1, 2)


def stage_at_depth(count: int, depth: Fraction) -> int:
    """Index of the stage at relative depth `depth` (0 < depth <= 1) of `count` stages."""
    return max(0, math.ceil(depth * count) - 1)


def match_stages(student_count: int, teacher_count: int) -> list[tuple[int, int]]:
    """(student stage, teacher stage) pairs at equal relative depths, shallow to deep."""
    pairs = min(student_count, teacher_count)
    depths = [Fraction(k, pairs) for k in range(1, pairs + 1)]
    return [(stage_at_depth(student_count, d), stage_at_depth(teacher_count, d)) for d in depths]


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
    student: nn.Module, teacher: Teachers, batch: Batch, method: str, what: str
) -> list[tuple[int, int]]:
    """The matched stage pairs whose common size is larger than 1x1: a map of one pixel
    normalises to the same value whatever the features, so a method comparing spatial maps
    (AT's attention, NST's neuron selectivity) has nothing to match there."""
    student_probe, teacher_probe = probe_pair(student, teacher, batch)
    pairs = [
        (s, t)
        for s, t in match_stages(len(student_probe.stages), len(teacher_probe.stages))
        if smaller_size(student_probe.stages[s], teacher_probe.stages[t]) != (1, 1)
    ]
    if not pairs:
        raise XdkdError(
            f"{method}: every matched stage pair is 1x1 at this image size, so no {what} to "
            "transfer; use larger images or a feature method on pooled features"
        )
    return pairs
