"""`mmd_kd`: KD plus the MMD between the student's source and target pooled features.

Long et al., "Learning Transferable Features with Deep Adaptation Networks", ICML 2015 (DAN):
adding a multi-kernel maximum mean discrepancy between source and target features to the task
loss pulls the two feature distributions together. Here: a sum of 5 Gaussian kernels with
bandwidths 2^-2..2^2 times the batch's mean squared distance, on the student's pooled
embedding, weight 1 (DAN's trade-off); the task loss is `kd`'s (Hinton et al. 2015: T=4,
0.1 * CE + 0.9 * KD on source and target images).

Deviations: DAN adapts several layers with kernel weights chosen by a min-max step and uses a
linear-time unbiased estimator; here one layer (the embedding every backbone has), equal
kernel weights, and the quadratic estimator (batches are small).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.kd import kd_terms
from benchmark.methods.parts import gaussian_mmd
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


@METHODS.register("mmd_kd")
class MMDKD(Method):
    family = "cross-domain"
    paper = "Long et al. ICML 2015, Deep Adaptation Networks (multi-kernel MMD) + KD"
    needs = Needs(target_images=True)
    defaults = {
        "temperature": 4.0,
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "mmd_weight": 1.0,
        "kernel_mul": 2.0,
        "kernel_num": 5,
    }
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "mmd_weight": log_uniform(0.1, 10.0, "DomainBed's MMD penalty range, 10^U(-1, 1)"),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch, student_features=True)
        pooled, source_count = step.student_outputs.pooled, step.source_count
        mmd = gaussian_mmd(
            pooled[:source_count],
            pooled[source_count:],
            self.params["kernel_mul"],
            self.params["kernel_num"],
        )
        return {**kd_terms(step, self.params), "mmd": self.params["mmd_weight"] * mmd}
