"""`adversarial_kd`: KD plus domain-adversarial training of the student's pooled features.

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016 (DANN): a domain
classifier on the features learns to tell source from target; a gradient-reversal layer between
them sends the features the opposite gradient, scaled by lambda = 2 / (1 + exp(-10 p)) - 1 (p:
training progress), so the features become domain-invariant. Here the features are the
student's pooled embedding and the task loss is `kd`'s (Hinton et al. 2015: T=4,
0.1 * CE + 0.9 * KD on source and target images). The discriminator (Ganin et al.'s Office
design, 1024-1024 with dropout 0.5) is the method's own, sized from a probe forward.

Deviation: Ganin et al. also anneal the learning rate (mu_0 / (1 + 10 p)^0.75); here the
suite's recipe sets the schedule, as for every method.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, distillation_step
from benchmark.methods.dann import DANN
from benchmark.methods.kd import kd_terms
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


@METHODS.register("adversarial_kd")
class AdversarialKD(DANN):
    """`dann`'s adversarial term beside `kd`'s loss in place of plain cross-entropy."""

    family = "cross-domain"
    paper = "Ganin et al. JMLR 2016, Domain-Adversarial Training of Neural Networks (+ KD)"
    needs = Needs(target_images=True)
    defaults = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9, **DANN.defaults}
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        **DANN.search,
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch, student_features=True)
        domain = self.domain_loss(step.student_outputs.pooled, step.source_count, batch.progress)
        return {**kd_terms(step, self.params), "domain": domain}
