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
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.kd import kd_terms
from benchmark.methods.parts import (
    dann_lambda,
    domain_discriminator,
    probe_outputs,
    reverse_gradient,
)
from benchmark.methods.registry import METHODS
from benchmark.protocols import Needs
from benchmark.teachers import Teachers


@METHODS.register("adversarial_kd")
class AdversarialKD(Method):
    family = "cross-domain"
    paper = "Ganin et al. JMLR 2016, Domain-Adversarial Training of Neural Networks (+ KD)"
    needs = Needs(target_images=True)
    defaults = {
        "temperature": 4.0,
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "domain_weight": 1.0,
        "discriminator_hidden": 1024,
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        pooled = probe_outputs(student, batch.source_images).pooled
        self.discriminator = domain_discriminator(
            pooled.shape[1], self.params["discriminator_hidden"]
        ).to(pooled.device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(self, student, teacher, batch, student_features=True)
        reversed_features = reverse_gradient(
            step.student_outputs.pooled, dann_lambda(batch.progress)
        )
        domain_logits = self.discriminator(reversed_features).squeeze(1)
        is_source = torch.zeros_like(domain_logits)
        is_source[: step.source_count] = 1.0
        domain = F.binary_cross_entropy_with_logits(domain_logits, is_source)
        return {**kd_terms(step, self.params), "domain": self.params["domain_weight"] * domain}
