"""`cc`: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019.

Beyond each image's own output (instance congruence, KD), the student keeps the teacher's
correlations between images: on the L2-normalised pooled features f_i, a Gaussian RBF
kernel k(f_i, f_j) = exp(-gamma ||f_i - f_j||^2) = exp(-2 gamma) exp(2 gamma f_i^T f_j),
approximated by its order-P Taylor series as in the paper,

    k(f_i, f_j) ~ sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (f_i^T f_j)^p,

gives a b x b correlation matrix per network, and the loss is their mean squared difference,
(1 / b^2) ||K_t - K_s||_F^2. The matrices are b x b whatever the feature widths, so no
embedding is needed. Defaults: P = 2, gamma = 0.4 (the paper's), CC weight 0.02 and CE
weight 1 (RepDistiller's CIFAR-100 `-b 0.02`).

Deviations: the paper adds CC to KD (instance congruence); as RepDistiller's benchmark
does, the CC term stands beside cross-entropy alone here (combine with `kd` by a method of
its own if wanted). RepDistiller's weight 0.02 goes with its own CC formulation (a
first-order expansion on 128-d linear embeddings); it is kept as the published setting.

The CC term applies to every image of the batch, source and unlabelled target (so the
correlations span both domains), beside cross-entropy on the labelled source images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.protocols import Needs
from benchmark.teachers import Teachers


def correlation_matrix(features: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """(B, B): the order-P Taylor expansion of the Gaussian kernel on unit features."""
    unit = F.normalize(features, dim=1)
    similarity = unit @ unit.T
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * similarity.pow(p)
        for p in range(order + 1)
    )


def cc_loss(student: torch.Tensor, teacher: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """Mean squared difference of the two correlation matrices."""
    return F.mse_loss(
        correlation_matrix(student, gamma, order), correlation_matrix(teacher, gamma, order)
    )


@METHODS.register("cc")
class CC(Method):
    family = "feature"
    paper = "Peng et al. ICCV 2019, Correlation Congruence for Knowledge Distillation"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"gamma": 0.4, "order": 2, "ce_weight": 1.0, "weight": 0.02}

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        cc = cc_loss(
            step.student_outputs.pooled,
            step.teacher_outputs.pooled,
            self.params["gamma"],
            int(self.params["order"]),
        )
        return {"ce": self.params["ce_weight"] * step.source_ce, "cc": self.params["weight"] * cc}
