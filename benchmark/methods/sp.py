"""`sp`: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

Images the teacher finds similar should look similar to the student: each network's last
stage gives a batch Gram matrix G = F F^T (F: the flattened maps, one row per image), rows
L2-normalised, and the loss is ||G_s - G_t||_F^2 / b^2. Being b x b, the matrices compare
across any channel counts and spatial sizes, so no adapter is needed. Defaults: weight 3000,
CE weight 1, last stage (the paper's CIFAR setting; the weight suits CIFAR feature scales and
is kept as published).

The SP term applies to every image of the batch, source and unlabelled target (so the
similarities span both domains), beside cross-entropy on the labelled source images.
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


def similarity_matrix(feature: torch.Tensor) -> torch.Tensor:
    """Row-normalised batch Gram matrix of flattened features."""
    flat = feature.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


def sp_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance of the similarity matrices, divided by b^2."""
    difference = similarity_matrix(student_map) - similarity_matrix(teacher_map)
    return difference.pow(2).sum() / len(student_map) ** 2


@METHODS.register("sp")
class SP(Method):
    family = "feature"
    paper = "Tung & Mori ICCV 2019, Similarity-Preserving Knowledge Distillation"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"ce_weight": 1.0, "weight": 3000.0}
    search = {
        "weight": log_uniform(300.0, 30000.0, "a decade either side of the paper's 3000"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        sp = sp_loss(student_out.stages[-1], teacher_out.stages[-1])
        return {"ce": self.params["ce_weight"] * step.source_ce, "sp": self.params["weight"] * sp}
