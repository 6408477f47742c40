"""`coral_kd`: KD plus the CORAL distance between the student's source and target features.

Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV workshops
2016: ||C_s - C_t||_F^2 / (4 d^2) between the feature covariances of the two domains, added
to the task loss, aligns second-order statistics. Here on the student's pooled embedding; the
task loss is `kd`'s (Hinton et al. 2015: T=4, 0.1 * CE + 0.9 * KD on source and target
images). The paper sets the CORAL weight so that both losses end training at about the same
size; it is a parameter here, default 1 (what common re-implementations use).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.kd import kd_terms
from benchmark.methods.parts import coral_loss
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


@METHODS.register("coral_kd")
class CoralKD(Method):
    family = "cross-domain"
    paper = "Sun & Saenko ECCV-W 2016, Deep CORAL: Correlation Alignment (+ KD)"
    needs = Needs(target_images=True)
    defaults = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9, "coral_weight": 1.0}
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "coral_weight": log_uniform(0.1, 10.0, "DomainBed's CORAL penalty range, 10^U(-1, 1)"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch, student_features=True)
        pooled, source_count = step.student_outputs.pooled, step.source_count
        coral = coral_loss(pooled[:source_count], pooled[source_count:])
        return {**kd_terms(step, self.params), "coral": self.params["coral_weight"] * coral}
