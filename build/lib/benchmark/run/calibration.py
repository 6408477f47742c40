"""Calibration of a classifier's probabilities: expected calibration error and NLL."""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 15


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS):
    """ECE (Naeini et al. 2015; Guo et al. 2017): equal-width confidence bins,
    sum over bins of |B|/N * |accuracy(B) - mean confidence(B)|."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0
    index = (confidence * bins).ceil().long().clamp(1, bins) - 1
    total = torch.zeros(bins, dtype=torch.float64)
    count = torch.zeros(bins, dtype=torch.float64)
    gap = (correct - confidence).double().cpu()
    total.index_add_(0, index.cpu(), gap)
    count.index_add_(0, index.cpu(), torch.ones_like(gap))
    return float(total.abs().sum() / len(labels))


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.double(), labels))
