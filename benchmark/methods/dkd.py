"""`dkd`: Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.

KD's KL divergence splits into a target-class part (TCKD: KL over the binary distribution
[p_target, 1 - p_target]) and a non-target part (NCKD: KL over the classes other than the
target, renormalised); DKD weights them apart, alpha * TCKD + beta * NCKD, both at
temperature T and times T^2, because the classical form ties NCKD to the teacher's
confidence on the target class and so suppresses it. Paper defaults (CIFAR-100): alpha=1,
beta=8, T=4, CE weight 1, the DKD term ramped up linearly over the first 20 of 240 epochs.

The DKD term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images. Unlabelled target images have no target class,
so there the teacher's predicted class stands in for it (a deviation the cross-domain
setting forces: the paper only distils on labelled images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, class_indices, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.search import log_uniform, uniform


def _target_and_rest(log_probs: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Log of the binary distribution [p_target, 1 - p_target], computed in log space."""
    log_target = log_probs[is_target].unsqueeze(1)
    log_rest = torch.logsumexp(log_probs.masked_fill(is_target, float("-inf")), dim=1)
    return torch.cat([log_target, log_rest.unsqueeze(1)], dim=1)


def _kl(student_log: torch.Tensor, teacher_log: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) from log-probabilities, batch mean."""
    return F.kl_div(student_log, teacher_log, reduction="batchmean", log_target=True)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * TCKD + beta * NCKD, batch means, times T^2."""
    rows, classes = student_logits.shape
    is_target = F.one_hot(labels, classes).bool()
    student_log = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log = F.log_softmax(teacher_logits / temperature, dim=1)
    tckd = _kl(_target_and_rest(student_log, is_target), _target_and_rest(teacher_log, is_target))
    # non-target logits alone, so their softmax is renormalised over the other classes
    student_rest = (student_logits / temperature)[~is_target].view(rows, classes - 1)
    teacher_rest = (teacher_logits / temperature)[~is_target].view(rows, classes - 1)
    nckd = _kl(F.log_softmax(student_rest, dim=1), F.log_softmax(teacher_rest, dim=1))
    return (alpha * tckd + beta * nckd) * temperature**2


@METHODS.register("dkd")
class DKD(Method):
    family = "logit"
    paper = "Zhao et al. CVPR 2022, Decoupled Knowledge Distillation"
    defaults = {
        "alpha": 1.0,
        "beta": 8.0,
        "temperature": 4.0,
        "ce_weight": 1.0,
        "warmup_fraction": 20 / 240,
    }
    search = {
        "alpha": log_uniform(0.25, 4.0, "a factor 4 either side of the paper's 1"),
        "beta": log_uniform(1.0, 10.0, "the paper's 8, and 2-6 for some pairs"),
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "warmup_fraction": uniform(0.0, 0.25, "the paper's 20 of 240 epochs; none to a quarter"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch)
        target_labels = step.teacher_logits[step.source_count :].argmax(dim=1)
        labels = torch.cat([class_indices(batch.source_labels), target_labels])
        p = self.params
        dkd = dkd_loss(
            step.student_logits,
            step.teacher_logits,
            labels,
            p["alpha"],
            p["beta"],
            p["temperature"],
        )
        warmup = min(batch.progress / p["warmup_fraction"], 1.0) if p["warmup_fraction"] else 1.0
        return {"ce": p["ce_weight"] * step.source_ce, "dkd": warmup * dkd}
