"""`pkt`: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV 2018.

The student matches the teacher's probability distribution of neighbours rather than its
features: within the batch, cosine similarities mapped to [0, 1] and normalised per row
give conditional probabilities p(j | i), and the loss is the KL divergence between the
teacher's and the student's, averaged over all b^2 entries (eps 1e-7, as the authors' code).
It works on the pooled features, whatever their widths. Defaults: weight 30000, CE weight 1
(RepDistiller's CIFAR-100 setting, kept as published: a mean over b^2 entries, the loss is
small, hence the large weight).

The PKT term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


def neighbour_probabilities(features: torch.Tensor, eps: float) -> torch.Tensor:
    """Rows of (cosine similarity + 1) / 2, normalised to sum to 1."""
    unit = features / (features.norm(dim=1, keepdim=True) + eps)
    similarity = (unit @ unit.T + 1) / 2
    return similarity / similarity.sum(dim=1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Mean over entries of p_t * log((p_t + eps) / (p_s + eps))."""
    student_probs = neighbour_probabilities(student, eps)
    teacher_probs = neighbour_probabilities(teacher, eps)
    return (teacher_probs * torch.log((teacher_probs + eps) / (student_probs + eps))).mean()


@METHODS.register("pkt")
class PKT(Method):
    family = "feature"
    paper = "Passalis & Tefas ECCV 2018, Probabilistic Knowledge Transfer"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"ce_weight": 1.0, "weight": 30000.0}
    search = {
        "weight": log_uniform(3000.0, 300000.0, "a decade either side of RepDistiller's 30000"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        pkt = pkt_loss(student_out.pooled, teacher_out.pooled)
        return {"ce": self.params["ce_weight"] * step.source_ce, "pkt": self.params["weight"] * pkt}
