"""Evaluation of a trained network: accuracy, calibration, corruption robustness.

BatchNorm runs in eval mode at test time (WILDS' rule). Robustness cells are accuracies on
cached corrupted copies of the target test set.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from benchmark.config import RunSpec
from benchmark.data.domains import scored_domains
from benchmark.data.provider import SplitProvider
from benchmark.data.tensors import DeviceSplit, ordered_batches
from benchmark.metrics import expected_calibration_error, negative_log_likelihood


@torch.no_grad()
def predict(
    model: nn.Module, split: DeviceSplit, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of a whole split, in order, in eval mode."""
    was_training = model.training
    model.eval()
    logits = [model(images).float() for images, _ in ordered_batches(split, batch_size)]
    model.train(was_training)
    return torch.cat(logits), split.labels


def accuracy(model: nn.Module, split: DeviceSplit, batch_size: int = 512) -> float:
    logits, labels = predict(model, split, batch_size)
    return float((logits.argmax(1) == labels).float().mean())


def clean_metrics(model: nn.Module, split: DeviceSplit, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy, ECE (15 bins) and NLL."""
    logits, labels = predict(model, split, batch_size)
    return {
        "acc": float((logits.argmax(1) == labels).float().mean()),
        "ece": expected_calibration_error(logits.softmax(1), labels),
        "nll": negative_log_likelihood(logits, labels),
    }


def corruption_accuracy(
    model: nn.Module, corrupted: Mapping[tuple[str, int], DeviceSplit], batch_size: int = 512
) -> dict[tuple[str, int], float]:
    """Accuracy on every (corruption, severity) cell."""
    return {cell: accuracy(model, split, batch_size) for cell, split in corrupted.items()}


def domain_metrics(
    network: nn.Module, spec: RunSpec, splits: SplitProvider, batch_size: int = 512
) -> tuple[dict[str, float], dict[str, float]]:
    """Target accuracy and calibration, source accuracy, and accuracy on every held-out
    domain of the family (neither source nor target); plus accuracy per domain."""
    size = spec.image_size
    family = scored_domains(spec.pair.source, spec.pair.target)
    per_domain = {
        d: clean_metrics(network, splits.split(d, "test", size), batch_size) for d in family
    }
    held_out = [d for d in family if d not in (spec.pair.source, spec.pair.target)]
    target = per_domain[spec.pair.target]
    metrics = {
        "target_acc": target["acc"],
        "target_ece": target["ece"],
        "target_nll": target["nll"],
        "source_acc": per_domain[spec.pair.source]["acc"],
        "heldout_mean_acc": (
            sum(per_domain[d]["acc"] for d in held_out) / len(held_out)
            if held_out
            else float("nan")
        ),
    }
    return metrics, {domain: values["acc"] for domain, values in per_domain.items()}
