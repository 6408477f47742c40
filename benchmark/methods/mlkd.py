"""`mlkd`: Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023.

The student's predictions are aligned with the teacher's at three levels, each at several
temperatures T (p = softmax(z / T), rows of the B x K matrix P):
- instance level: KD, KL(p_t || p_s) T^2, batch mean;
- batch level: the B x B Gram matrix of the batch's predictions, G = P P^T (how alike the
  teacher finds each pair of images), ||G_t - G_s||_F^2 / B;
- class level: the K x K class correlation matrix M = P^T P, ||M_t - M_s||_F^2 / K;

    L_MLKD = sum_T ( KD_T + batch_T + class_T ),   T in {2, 3, 4, 5, 6}

(the authors' code's temperatures: the base 4 and 2, 3, 5, 6). Defaults: CE weight 1 and
weight 1 on each level (the authors' CIFAR-100 settings, from their mdistiller-based code).

Simplified: the paper distils on a weak and a strong augmentation of each image (KD on both
views, the batch and class levels on the weak one) and masks each level by the teacher's
confidence on the weak view (the images, and the classes, at or below the batch median).
The suite gives one view of each image, so every level is computed once, on that view, and
without the masks: in the authors' code each mask multiplies a loss already reduced to a
scalar, so it only scales that term by the fraction kept (about 1/2) and selects nothing.
The cross-entropy is taken once, on the one view (the authors' sum it over both views).

The MLKD terms apply to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.kd import kd_loss
from benchmark.methods.registry import METHODS
from benchmark.teachers import Teachers


def batch_level_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """||P_t P_t^T - P_s P_s^T||_F^2 / B at temperature T."""
    student = (student_logits / temperature).softmax(dim=1)
    teacher = (teacher_logits / temperature).softmax(dim=1)
    difference = teacher @ teacher.T - student @ student.T
    return difference.pow(2).sum() / len(student_logits)


def class_level_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """||P_t^T P_t - P_s^T P_s||_F^2 / K at temperature T."""
    student = (student_logits / temperature).softmax(dim=1)
    teacher = (teacher_logits / temperature).softmax(dim=1)
    difference = teacher.T @ teacher - student.T @ student
    return difference.pow(2).sum() / student_logits.shape[1]


def mlkd_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperatures: list[float]
) -> dict[str, torch.Tensor]:
    """Instance-, batch- and class-level losses, each summed over the temperatures."""
    levels = {"instance": kd_loss, "batch": batch_level_loss, "class": class_level_loss}
    return {
        name: torch.stack([level(student_logits, teacher_logits, t) for t in temperatures]).sum()
        for name, level in levels.items()
    }


def mlkd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperatures: list[float]
) -> torch.Tensor:
    """sum over T of KD_T + batch-level_T + class-level_T."""
    return sum(mlkd_terms(student_logits, teacher_logits, temperatures).values())


@METHODS.register("mlkd")
class MLKD(Method):
    family = "logit"
    paper = "Jin et al. CVPR 2023, Multi-Level Logit Distillation"
    defaults = {
        "temperatures": [2.0, 3.0, 4.0, 5.0, 6.0],
        "ce_weight": 1.0,
        "instance_weight": 1.0,
        "batch_weight": 1.0,
        "class_weight": 1.0,
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch)
        p = self.params
        terms = mlkd_terms(step.student_logits, step.teacher_logits, list(p["temperatures"]))
        return {
            "ce": p["ce_weight"] * step.source_ce,
            "mlkd_instance": p["instance_weight"] * terms["instance"],
            "mlkd_batch": p["batch_weight"] * terms["batch"],
            "mlkd_class": p["class_weight"] * terms["class"],
        }
