"""`rkd`: Park et al., "Relational Knowledge Distillation", CVPR 2019.

The student keeps the teacher's geometry among images rather than its outputs: pairwise
distances (each normalised by the mean non-zero distance of its network, so scales need not
match) and angles of every triplet, both compared with the smooth L1 (Huber) loss, on the
pooled features. Distances and angles do not depend on the embedding width, so no adapter is
needed. Defaults: distance weight 25, angle weight 50, CE weight 1 (RepDistiller's CIFAR-100
setting, after the paper).

The RKD terms apply to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


def pairwise_distances(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix with an exact zero diagonal (and finite gradients there)."""
    squared_norms = embeddings.pow(2).sum(dim=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2 * embeddings @ embeddings.T
    off_diagonal = 1 - torch.eye(len(embeddings), device=embeddings.device)
    return squared.clamp(min=eps).sqrt() * off_diagonal


def normalised_distances(embeddings: torch.Tensor) -> torch.Tensor:
    distances = pairwise_distances(embeddings)
    return distances / distances[distances > 0].mean()


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the two normalised distance matrices."""
    return F.smooth_l1_loss(normalised_distances(student), normalised_distances(teacher))


def triplet_angles(embeddings: torch.Tensor) -> torch.Tensor:
    """cos of the angle at j of every triplet (i, j, k): <unit(e_i - e_j), unit(e_k - e_j)>."""
    directions = F.normalize(embeddings[None, :, :] - embeddings[:, None, :], dim=2)
    return torch.bmm(directions, directions.transpose(1, 2)).flatten()


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Huber loss between the cosines of all triplet angles."""
    return F.smooth_l1_loss(triplet_angles(student), triplet_angles(teacher))


@METHODS.register("rkd")
class RKD(Method):
    family = "feature"
    paper = "Park et al. CVPR 2019, Relational Knowledge Distillation"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"ce_weight": 1.0, "distance_weight": 25.0, "angle_weight": 50.0}
    search = {
        "distance_weight": log_uniform(2.5, 250.0, "a decade either side of the paper's 25"),
        "angle_weight": log_uniform(5.0, 500.0, "a decade either side of the paper's 50"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        distance = rkd_distance_loss(student_out.pooled, teacher_out.pooled)
        angle = rkd_angle_loss(student_out.pooled, teacher_out.pooled)
        return {
            "ce": self.params["ce_weight"] * step.source_ce,
            "rkd_distance": self.params["distance_weight"] * distance,
            "rkd_angle": self.params["angle_weight"] * angle,
        }
