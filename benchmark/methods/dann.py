"""`dann`: domain-adversarial training of the student alone, no teacher.

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 2016: a domain classifier
on the features learns to tell source from target; a gradient-reversal layer between them
sends the features the opposite gradient, scaled by lambda = 2 / (1 + exp(-10 p)) - 1 (p:
training progress), so the features become domain-invariant while cross-entropy on the
labelled source images trains the classifier. The control `adversarial_kd` is measured
against: the same adversarial term with the teacher's KD in place of plain cross-entropy,
so the two rows separate what distillation adds from what gradient reversal does. The
discriminator (Ganin et al.'s Office design, 1024-1024 with dropout 0.5) is the method's
own, sized from a probe forward, on the student's pooled embedding.

Deviation: Ganin et al. also anneal the learning rate (mu_0 / (1 + 10 p)^0.75); here the
suite's recipe sets the schedule, as for every method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.parts import (
    dann_lambda,
    domain_discriminator,
    probe_outputs,
    reverse_gradient,
)
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform


@METHODS.register("dann")
class DANN(Method):
    family = "cross-domain"
    paper = "Ganin et al. JMLR 2016, Domain-Adversarial Training of Neural Networks"
    needs = Needs(teacher=None, target_images=True)
    defaults = {"domain_weight": 1.0, "discriminator_hidden": 1024}
    search = {
        "domain_weight": log_uniform(0.01, 100.0, "DomainBed's DANN lambda, 10^U(-2, 2)"),
        "discriminator_hidden": int_uniform(64, 1024, "DomainBed's DANN widths, 64-1024"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        pooled = probe_outputs(student, batch.source_images).pooled
        self.discriminator = domain_discriminator(
            pooled.shape[1], self.params["discriminator_hidden"]
        ).to(pooled.device)

    def domain_loss(self, pooled: torch.Tensor, source_count: int, progress: float) -> torch.Tensor:
        """The weighted domain classifier's cross-entropy on source (first `source_count`
        rows) against target features, through the gradient reversal."""
        domain_logits = self.discriminator(reverse_gradient(pooled, dann_lambda(progress)))
        is_source = torch.zeros_like(domain_logits.squeeze(1))
        is_source[:source_count] = 1.0
        loss = F.binary_cross_entropy_with_logits(domain_logits.squeeze(1), is_source)
        return self.params["domain_weight"] * loss

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        outputs = forward_outputs(student, batch.all_images())
        count = len(batch.source_labels)
        ce = self.cross_entropy(outputs.logits[:count], batch.source_labels)
        return {"ce": ce, "domain": self.domain_loss(outputs.pooled, count, batch.progress)}
