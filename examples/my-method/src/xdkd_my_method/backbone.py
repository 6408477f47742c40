"""`my_cnn`: a narrow two-stage digit CNN registered with timm, so suites name it like any
backbone (`students: [my_cnn]`).

It is built from the suite's `DigitCNN`, which gives it the feature interface that feature
methods read (`forward_intermediates`, `forward_head`, `get_classifier`).
"""

from __future__ import annotations

from timm.models import register_model
from torch import nn

from benchmark.models.digit_cnns import DigitCNN


def _stage(in_chs: int, out_chs: int) -> nn.Sequential:
    """5x5 convolution, batch norm, ReLU, 2x2 max pooling (LeNet's stage)."""
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 5), nn.BatchNorm2d(out_chs), nn.ReLU(), nn.MaxPool2d(2)
    )


@register_model
def my_cnn(pretrained: bool = False, num_classes: int = 10, in_chans: int = 3, **_) -> DigitCNN:
    """Half of LeNet's widths (16, 32 channels, a 128-d embedding), for 32 px images; timm's
    configuration keywords are not used."""
    if pretrained:
        raise ValueError("my_cnn has no pretrained weights; set pretrained: false")
    stages = [_stage(in_chans, 16), _stage(16, 32)]
    return DigitCNN(stages, [16, 32], [2, 6], 32 * 5 * 5, 128, num_classes, drop_rate=0.0)
