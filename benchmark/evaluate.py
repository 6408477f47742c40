"""Evaluation of a trained network on test splits."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.data.tensors import DeviceSplit, ordered_batches


@torch.no_grad()
def accuracy(model: nn.Module, split: DeviceSplit, batch_size: int = 512) -> float:
    """Top-1 accuracy in eval mode (BatchNorm in eval mode at test time, as WILDS asks)."""
    was_training = model.training
    model.eval()
    correct = 0
    for images, labels in ordered_batches(split, batch_size):
        correct += int((model(images).argmax(1) == labels).sum())
    model.train(was_training)
    return correct / len(split)
