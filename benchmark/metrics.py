"""Metric formulas: calibration (ECE, NLL) and corruption robustness (mCA, mCE, relative mCE).

Robustness follows Hendrycks & Dietterich (ICLR 2019): with E the top-1 error,
CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}, relative CE_c = sum_s (E_{s,c} - E_clean) /
sum_s (E^ref_{s,c} - E^ref_clean), mCE and relative mCE their means over corruptions; the
reference outside ImageNet-C is an in-suite model, named wherever the numbers appear.
"""

from __future__ import annotations

from collections.abc import Mapping

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


Cells = Mapping[tuple[str, int], float]  # (corruption, severity) -> accuracy
# Relative CE divides by the reference's degradation, summed over severities; where the
# reference barely degrades (under 5 points in all) the ratio is noise, so it is undefined.
MIN_REFERENCE_DEGRADATION = 0.05


def corruption_errors(
    cells: Cells, clean: float, reference: Cells, reference_clean: float
) -> dict[str, dict[str, float]]:
    """Per corruption: CE and relative CE against the reference model; relative CE is NaN
    where the reference degrades by less than MIN_REFERENCE_DEGRADATION in all."""
    out: dict[str, dict[str, float]] = {}
    for corruption in sorted({name for name, _ in cells}):
        severities = sorted(s for name, s in cells if name == corruption)
        error = [1 - cells[(corruption, s)] for s in severities]
        ref_error = [1 - reference[(corruption, s)] for s in severities]
        rel_ref = sum(e - (1 - reference_clean) for e in ref_error)
        out[corruption] = {
            "ce": sum(error) / sum(ref_error) if sum(ref_error) else float("nan"),
            "relative_ce": (
                sum(e - (1 - clean) for e in error) / rel_ref
                if rel_ref >= MIN_REFERENCE_DEGRADATION
                else float("nan")
            ),
        }
    return out


def mean_corruption_accuracy(cells: Cells) -> float:
    return sum(cells.values()) / len(cells)
