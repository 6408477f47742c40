"""`mlkd`: Jin, Wang & Lin, "Multi-Level Logit Distillation", CVPR 2023.

The student's predictions are aligned with the teacher's at three levels, each at several
temperatures T (p = softmax(z / T), rows of the B x K matrix P):
- instance level: KD, KL(p_t || p_s) T^2, batch mean;
- batch level: the B x B Gram matrix of the batch's predictions, G = P P^T (how alike the
  teacher finds each pair of images), ||G_t - G_s||_F^2 / B;
- class level: the K x K class correlation matrix M = P^T P, ||M_t - M_s||_F^2 / K;

    L = w_ce CE + sum_T ( w_inst KD_T + w_batch batch_T + w_class class_T ),   T in {2, ..., 6}

(the authors' code's temperatures: the base 4 and 2, 3, 5, 6).

Defaults: the weights the authors' code puts on each term of one view. Their `KD_ours`
(Jin-Ying/Multi-Level-Logit-Distillation, `mdistiller/distillers/KD_ours.py`) reads CE weight
0.1, KD weight 0.9 and base temperature 4 from mdistiller's `cfg.py` (`KD.LOSS.CE_WEIGHT`,
`KD.LOSS.KD_WEIGHT`, `KD.TEMPERATURE`; the CIFAR-100 configs in `configs/cifar100/ours/` set
none of them), and at each temperature T in {4, 3, 5, 2, 6} returns
- CE: 0.1 CE on the weak view + 0.1 CE on the strong view (T plays no part);
- instance: 0.9 KD_T on the weak view times its mask's mean, + 0.9 KD_T on the strong view,
  unmasked (at T = 2 and 6 this second term reads the weak view's logits again);
- class level (their `cc_loss`, K x K, / K) and batch level (their `bc_loss`, B x B, / B):
  0.9 times its mask's mean, on the weak view only (the strong-view ones are computed but not
  among the returned losses),
which their trainer adds up. Each mask keeps the images whose teacher top probability (for the
class level: the classes whose teacher probability summed over the batch), on the weak view,
is at or below the median, and multiplies a loss already reduced to a scalar: it scales the
term by the fraction kept and selects nothing, and that fraction is 1/2 for an even count of
distinct values (their 64 images, 100 classes). With the suite's one view standing for both,
each term's weight is the sum of its weights over the two views:

    w_ce = 0.1 + 0.1 = 0.2,   w_inst = 0.9 / 2 + 0.9 = 1.35,
    w_batch = 0.9 / 2 = 0.45,   w_class = 0.9 / 2 = 0.45,

at every temperature (the weights `mlkd_weighted_terms` applies).

Simplified: the paper distils on a weak and a strong augmentation of each image and masks
each level by the teacher's confidence on the weak view; the suite gives one view of each
image, so every level is computed once, on that view, without the masks (scalars, as above),
with the weights above folding in both views and the masks' 1/2.

The MLKD terms apply to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.kd import kd_loss
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.search import log_uniform


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


def mlkd_weighted_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperatures: list[float],
    instance_weight: float,
    batch_weight: float,
    class_weight: float,
) -> dict[str, torch.Tensor]:
    """The three MLKD terms as the method weights them (each level summed over T)."""
    terms = mlkd_terms(student_logits, teacher_logits, temperatures)
    return {
        "mlkd_instance": instance_weight * terms["instance"],
        "mlkd_batch": batch_weight * terms["batch"],
        "mlkd_class": class_weight * terms["class"],
    }


@METHODS.register("mlkd")
class MLKD(Method):
    family = "logit"
    paper = "Jin et al. CVPR 2023, Multi-Level Logit Distillation"
    defaults = {
        "temperatures": [2.0, 3.0, 4.0, 5.0, 6.0],
        "ce_weight": 0.2,
        "instance_weight": 1.35,
        "batch_weight": 0.45,
        "class_weight": 0.45,
    }
    search = {
        "instance_weight": log_uniform(0.135, 13.5, "a decade either side of the code's 1.35"),
        "batch_weight": log_uniform(0.045, 4.5, "a decade either side of the code's 0.45"),
        "class_weight": log_uniform(0.045, 4.5, "a decade either side of the code's 0.45"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch)
        p = self.params
        terms = mlkd_weighted_terms(
            step.student_logits,
            step.teacher_logits,
            list(p["temperatures"]),
            p["instance_weight"],
            p["batch_weight"],
            p["class_weight"],
        )
        return {"ce": p["ce_weight"] * step.source_ce, **terms}
