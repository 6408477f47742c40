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

from benchmark.methods.base import Batch, DistillationStep, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.search import log_uniform


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
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        return kd_terms(distillation_step(self, student, teacher, batch), self.params)


def kd_terms(step: DistillationStep, params: dict) -> dict[str, torch.Tensor]:
    """`ce_weight` * source CE + `kd_weight` * KD on every image: the task loss that the
    cross-domain methods add their own term to."""
    kd = kd_loss(step.student_logits, step.teacher_logits, params["temperature"])
    return {"ce": params["ce_weight"] * step.source_ce, "kd": params["kd_weight"] * kd}
