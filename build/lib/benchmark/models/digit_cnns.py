"""Small digit CNNs from the domain-adaptation literature, registered into timm's registry.

Registering them with timm's own `register_model` means every backbone in the suite, ImageNet
or digit-sized, is made by `timm.create_model` and exposes the same feature interface
(`forward_intermediates`, `forward_head`, `get_classifier`), so no method special-cases them.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


def _conv_stage(in_chs: int, out_chs: int, stride: int, pool: bool, drop: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, 5, stride=stride, padding=0 if pool else 2),
        nn.BatchNorm2d(out_chs),
    ]
    if drop:
        layers.append(nn.Dropout2d(drop))
    layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class DigitCNN(nn.Module):
    """Conv stages, a fully connected embedding (the pooled features), a linear classifier."""

    def __init__(
        self,
        stages: list[nn.Sequential],
        stage_channels: list[int],
        stage_reductions: list[int],
        flat_dim: int,
        embed_dim: int,
        num_classes: int,
        drop_rate: float,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": f"stages.{i}"}
            for i, (c, r) in enumerate(zip(stage_channels, stage_reductions, strict=True))
        ]
        self.embed = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat_dim, embed_dim),
            nn.BatchNorm1d(embed_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
        )
        self.num_features = self.head_hidden_size = embed_dim
        self.num_classes = num_classes
        self.fc = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.embed(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature contract: the outputs of the chosen stages, and the final map."""
        count = len(self.stages)
        if indices is None:
            wanted = set(range(count))
        elif isinstance(indices, int):
            wanted = set(range(count - indices, count))
        else:
            wanted = {i % count for i in indices}
        intermediates = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in wanted:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)


def _checked(name: str, pretrained: bool, kwargs: dict) -> dict:
    if pretrained:
        raise ValueError(f"backbone '{name}' has no pretrained weights; set pretrained: false")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return kwargs


@register_model
def lenet(pretrained: bool = False, **kwargs) -> DigitCNN:
    """LeNet-style CNN for 32x32 digits (LeCun et al. 1998), as in ADDA (Tzeng et al. 2017):
    two 5x5 conv stages (32, 64 channels) with max pooling, a 512-d embedding."""
    kwargs = _checked("lenet", pretrained, kwargs)
    in_chans = kwargs.pop("in_chans", 3)
    stages = [
        _conv_stage(in_chans, 32, stride=1, pool=True, drop=0.0),
        _conv_stage(32, 64, stride=1, pool=True, drop=0.0),
    ]
    return DigitCNN(
        stages,
        stage_channels=[32, 64],
        stage_reductions=[2, 6],
        flat_dim=64 * 5 * 5,
        embed_dim=kwargs.pop("embed_dim", 512),
        num_classes=kwargs.pop("num_classes", 10),
        drop_rate=kwargs.pop("drop_rate", 0.5),
        **kwargs,
    )


@register_model
def dtn(pretrained: bool = False, **kwargs) -> DigitCNN:
    """The DTN digit network (Taigman et al. 2017), used for SVHN->MNIST in ADDA and CyCADA:
    three stride-2 5x5 conv stages (64, 128, 256 channels) with dropout, a 512-d embedding."""
    kwargs = _checked("dtn", pretrained, kwargs)
    in_chans = kwargs.pop("in_chans", 3)
    drop = kwargs.pop("drop_rate", 0.1)
    stages = [
        _conv_stage(in_chans, 64, stride=2, pool=False, drop=drop),
        _conv_stage(64, 128, stride=2, pool=False, drop=drop),
        _conv_stage(128, 256, stride=2, pool=False, drop=drop),
    ]
    return DigitCNN(
        stages,
        stage_channels=[64, 128, 256],
        stage_reductions=[2, 4, 8],
        flat_dim=256 * 4 * 4,
        embed_dim=kwargs.pop("embed_dim", 512),
        num_classes=kwargs.pop("num_classes", 10),
        drop_rate=0.5,
        **kwargs,
    )
