"""`dist`: Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022.

Exact KL matching is too strict when teacher and student differ a lot; DIST asks only that
the student keep the teacher's relations: inter-class (Pearson correlation between the two
softmax vectors of each image) and intra-class (Pearson correlation, across the batch, of
each class's probabilities). Loss: tau^2 * (beta * (1 - mean inter-class correlation) +
gamma * (1 - mean intra-class correlation)) on softmax(z / tau). Paper defaults:
beta = gamma = tau = 1, CE weight 1.

The DIST term applies to every image of the batch, source and unlabelled target (so the
intra-class relation is taken across both domains), beside cross-entropy on the labelled
source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.search import log_uniform


def mean_pearson(first: torch.Tensor, second: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over rows of the Pearson correlation between matching rows."""
    first = first - first.mean(dim=1, keepdim=True)
    second = second - second.mean(dim=1, keepdim=True)
    covariance = (first * second).sum(dim=1)
    return (covariance / (first.norm(dim=1) * second.norm(dim=1) + eps)).mean()


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float,
    gamma: float,
    tau: float,
) -> torch.Tensor:
    """beta * inter-class + gamma * intra-class relation loss, times tau^2."""
    student_probs = F.softmax(student_logits / tau, dim=1)
    teacher_probs = F.softmax(teacher_logits / tau, dim=1)
    inter_class = 1 - mean_pearson(student_probs, teacher_probs)
    intra_class = 1 - mean_pearson(student_probs.T, teacher_probs.T)
    return tau**2 * (beta * inter_class + gamma * intra_class)


@METHODS.register("dist")
class DIST(Method):
    family = "logit"
    paper = "Huang et al. NeurIPS 2022, Knowledge Distillation from A Stronger Teacher"
    defaults = {"beta": 1.0, "gamma": 1.0, "tau": 1.0, "ce_weight": 1.0}
    search = {
        "beta": log_uniform(0.25, 4.0, "a factor 4 either side of the paper's 1"),
        "gamma": log_uniform(0.25, 4.0, "a factor 4 either side of the paper's 1"),
        "tau": log_uniform(1.0, 4.0, "the paper's 1, up to KD's usual 4"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch)
        p = self.params
        dist = dist_loss(step.student_logits, step.teacher_logits, p["beta"], p["gamma"], p["tau"])
        return {"ce": p["ce_weight"] * step.source_ce, "dist": dist}
