"""Backbones: every timm model name, plus the digit CNNs registered into timm's registry."""

from benchmark.models import digit_cnns  # noqa: F401  (registers lenet and dtn with timm)
from benchmark.models.backbones import backbone_names, create_backbone, input_normalisation
from benchmark.models.features import ModelOutputs, forward_outputs

__all__ = [
    "ModelOutputs",
    "backbone_names",
    "create_backbone",
    "forward_outputs",
    "input_normalisation",
]
