"""Evaluation primitives for a trained network: logits of a split, accuracy, calibration.

BatchNorm runs in eval mode at test time (WILDS' rule).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.calibration import expected_calibration_error, negative_log_likelihood
from benchmark.data.provider import Split
from benchmark.data.tensors import ordered_batches


@torch.no_grad()
def predict(
    model: nn.Module, split: Split, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of a whole split, in order, in eval mode."""
    was_training = model.training
    model.eval()
    logits = [model(images).float() for images, _ in ordered_batches(split, batch_size)]
    model.train(was_training)
    return torch.cat(logits), split.labels


def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    logits, labels = predict(model, split, batch_size)
    return float((logits.argmax(1) == labels).float().mean())


def clean_metrics(model: nn.Module, split: Split, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy, ECE (15 bins) and NLL."""
    logits, labels = predict(model, split, batch_size)
    return {
        "acc": float((logits.argmax(1) == labels).float().mean()),
        "ece": expected_calibration_error(logits.softmax(1), labels),
        "nll": negative_log_likelihood(logits, labels),
    }


def corruption_accuracy(
    model: nn.Module, corrupted: dict[tuple[str, int], Split], batch_size: int = 512
) -> dict[tuple[str, int], float]:
    """Accuracy on every (corruption, severity) cell."""
    return {cell: accuracy(model, split, batch_size) for cell, split in corrupted.items()}
