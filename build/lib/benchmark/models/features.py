"""Stage features, pooled features and logits from any backbone, through timm's interface.

Feature-based distillation needs intermediate outputs of both networks. Instead of hooking
module paths (which breaks across architectures), every backbone answers timm's
`forward_intermediates`; ViT tokens come back as NCHW maps, so methods see one shape family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelOutputs:
    stages: list[torch.Tensor]  # one (B, C, H, W) map per stage, shallow to deep
    pooled: torch.Tensor  # (B, D): the input of the classifier
    logits: torch.Tensor  # (B, num_classes)


def forward_outputs(model: nn.Module, images: torch.Tensor) -> ModelOutputs:
    """One forward pass returning every stage, the pooled embedding and the logits."""
    final, stages = model.forward_intermediates(images)
    pooled = model.forward_head(final, pre_logits=True)
    logits = model.get_classifier()(pooled)
    return ModelOutputs(stages=list(stages), pooled=pooled, logits=logits)
