"""`kd`: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015.

The student matches the teacher's temperature-softened class distribution,
KL(softmax(z_t/T) || softmax(z_s/T)) * T^2 (the T^2 keeps gradient scale independent of T),
on source images and on the unlabelled target images, beside cross-entropy on source labels.
Defaults are the usual CIFAR setting: T=4, 0.1 * CE + 0.9 * KD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    """Batch-mean KL divergence between softened distributions, times T^2."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * (
        temperature**2
    )


@METHODS.register("kd")
class KD(Method):
    family = "logit"
    paper = "Hinton et al. 2015, Distilling the Knowledge in a Neural Network"
    defaults = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}

    def losses(
        self, student: nn.Module, teacher: nn.Module | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        images = batch.all_images()
        student_logits = student(images)
        with torch.no_grad():
            teacher_logits = teacher(images)
        source_logits = student_logits[: len(batch.source_labels)]
        ce = F.cross_entropy(source_logits, batch.source_labels)
        kd = kd_loss(student_logits, teacher_logits, self.params["temperature"])
        return {"ce": self.params["ce_weight"] * ce, "kd": self.params["kd_weight"] * kd}
