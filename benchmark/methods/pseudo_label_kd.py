"""`pseudo_label_kd`: KD plus cross-entropy on the teacher's confident target predictions.

Pseudo-labelling (Lee, ICML-W 2013) with confidence thresholding as in FixMatch (Sohn et al.,
NeurIPS 2020): a target image whose teacher top probability exceeds the threshold is trained
on with the teacher's argmax as a hard label; the masked cross-entropy is averaged over the
whole target batch, so the term grows with the fraction of confident predictions. Hard labels
sharpen what KD's soft targets blur, only where the teacher is sure under the shift.
Defaults: threshold 0.9 (FixMatch uses 0.95 on in-domain data; a source teacher is less
confident on shifted images), and the task loss is `kd`'s (Hinton et al. 2015: T=4,
0.1 * CE + 0.9 * KD on source and target images); the pseudo-label term gets the source
cross-entropy's weight, 0.1 (FixMatch's lambda_u = 1 relative to its supervised term).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.kd import kd_terms
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform


def pseudo_label_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Cross-entropy to the teacher's argmax where its softmax confidence exceeds the
    threshold, zero elsewhere, averaged over all samples."""
    confidence, labels = F.softmax(teacher_logits, dim=1).max(dim=1)
    mask = (confidence > threshold).float()
    return (F.cross_entropy(student_logits, labels, reduction="none") * mask).mean()


@METHODS.register("pseudo_label_kd")
class PseudoLabelKD(Method):
    family = "cross-domain"
    paper = "Lee 2013 pseudo-labels, thresholded as in Sohn et al. NeurIPS 2020 (FixMatch), + KD"
    needs = Needs(target_images=True)
    defaults = {
        "temperature": 4.0,
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "pseudo_weight": 0.1,
        "threshold": 0.9,
    }
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "pseudo_weight": log_uniform(0.01, 1.0, "a decade either side of the default 0.1"),
        "threshold": uniform(0.7, 0.99, "FixMatch's 0.95; lower for a teacher under shift"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch)
        count = step.source_count
        pseudo = pseudo_label_loss(
            step.student_logits[count:], step.teacher_logits[count:], self.params["threshold"]
        )
        return {**kd_terms(step, self.params), "pseudo": self.params["pseudo_weight"] * pseudo}
