"""`mt_mtda`: Nguyen-Meidine, Belal, Kiran, Dolz, Blais-Morin & Granger, "Unsupervised
Multi-Target Domain Adaptation Through Knowledge Distillation", WACV 2021 (MT-MTDA).

One labelled source, several unlabelled targets, one student for all of them. Adapting one
model to all targets at once blends them and loses what is specific to each; MT-MTDA instead
adapts one teacher per target (DANN: a domain discriminator on the teacher's features behind
gradient reversal, source vs that target, plus source cross-entropy) and lets the teachers
take turns teaching the student, each on its own target, so the student inherits every
target's specific adaptation without the targets being mixed in one alignment. The
distillation is progressive: beta, the weight of the teacher's lesson, grows from 0.1 to
0.9 while the teachers adapt, so the student listens more as the teachers get better.

Per step, with i = step mod n (n targets; a step counter buffer, so it resumes):
- teacher i: (1 - beta) * [CE(teacher_i(x_s), y_s) + gamma * DANN_i(x_s vs x_ti)], the
  discriminator behind gradient reversal with Ganin et al.'s lambda = 2 / (1 + e^(-10 p)) - 1;
- student: beta * [KL_T(teacher_i || student) * T^2 on x_ti
  + alpha * KL_T(teacher_i || student) * T^2 on x_s + (1 - alpha) * CE(student(x_s), y_s)].
The weighting follows the authors' public code (`kd_loss = beta * (target_kd + source_kd)`,
the teacher's DANN loss weighted by 1 - beta), which matches the paper's description of a
progressive beta on the teacher's lesson.
Defaults, the paper's and its code's: T=20, alpha=0.2, beta from 0.1 to 0.9 growing geometrically
(beta = 0.1 * 9^p, the code's exponential schedule, p the training progress), gamma=0.5 (the
code's weight of the teachers' adversarial loss); the discriminator is Ganin et al.'s Office
design (1024-1024, dropout 0.5, `parts.domain_discriminator`).

The teachers are copies of the suite's source teacher (white box: its weights), trainable
parts of this method, in training mode; the frozen teacher itself is never changed.

Deviations: the code starts each teacher from ImageNet weights and trains it with DANN from
the start, here from the trained source teacher; the code takes one step of the teacher and
then one of the student (separate SGD optimisers), here both losses share the loop's step and
optimiser, and the teacher's soft targets are its logits of the same forward (detached). Its
KL is computed with the arguments of `F.kl_div` swapped (KL(student || teacher)); here it is
Hinton's KL(teacher || student), as `kd` computes it. The code's student-side adversarial
term (`is_cst`: alpha * a discriminator loss of the student's own features on target images)
is left out: the student learns the adaptation from its teachers only. The student and each
teacher see one joint source + target batch (one BatchNorm pass).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import dann_lambda, domain_discriminator, reverse_gradient
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform, uniform


def progressive_beta(progress: float, start: float, end: float) -> float:
    """start * (end / start)^p: from `start` to `end` geometrically over training."""
    return start * (end / start) ** progress


def mt_mtda_loss(
    student_target_logits: torch.Tensor,
    teacher_target_logits: torch.Tensor,
    student_source_logits: torch.Tensor,
    teacher_source_logits: torch.Tensor,
    source_ce: torch.Tensor,
    alpha: float,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """beta * [KD_T(target) + alpha * KD_T(source) + (1 - alpha) * CE(source)], KD_T being
    KL(teacher || student) at temperature T, times T^2, batch mean."""
    target = kd_loss(student_target_logits, teacher_target_logits, temperature)
    source = kd_loss(student_source_logits, teacher_source_logits, temperature)
    return beta * (target + alpha * source + (1 - alpha) * source_ce)


@METHODS.register("mt_mtda")
class MTMTDA(Method):
    family = "multi-teacher"
    paper = "Nguyen-Meidine et al. WACV 2021, Unsupervised Multi-Target DA Through KD (MT-MTDA)"
    needs = Needs(teacher="features", teachers="one", target_images=True, several_targets=True)
    defaults = {
        "temperature": 20.0,
        "alpha": 0.2,
        "beta_start": 0.1,
        "beta_end": 0.9,
        "teacher_domain_weight": 0.5,
        "discriminator_hidden": 1024,
    }
    search = {
        "temperature": log_uniform(4.0, 40.0, "the paper's 20; from KD's usual 4 to twice it"),
        "alpha": uniform(0.0, 1.0, "the KD share of the source term, a fraction: the paper's 0.2"),
        "beta_start": log_uniform(0.01, 0.3, "the code's 0.1, below the end's range"),
        "beta_end": uniform(0.5, 0.95, "the code's 0.9, above the start's range"),
        "teacher_domain_weight": log_uniform(0.05, 5.0, "a decade either side of the code's 0.5"),
        "discriminator_hidden": int_uniform(64, 1024, "DomainBed's DANN widths, 64-1024"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        source = teacher.module()
        device = batch.source_images.device
        pooled = teacher.outputs(batch.source_images[:2]).pooled
        self.target_teachers = nn.ModuleList()
        self.discriminators = nn.ModuleList()
        for _ in batch.targets:
            adapted = copy.deepcopy(source).requires_grad_(True).train()
            self.target_teachers.append(adapted)
            hidden = self.params["discriminator_hidden"]
            self.discriminators.append(domain_discriminator(pooled.shape[1], hidden).to(device))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_target(self) -> int:
        """The target (and teacher) whose turn it is: step mod n."""
        return int(self.step) % len(self.target_teachers)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        index = self.current_target()
        self.step += 1
        p = self.params
        labels = batch.source_labels
        count = len(labels)
        images = torch.cat([batch.source_images, batch.targets[index].images])
        adapted = forward_outputs(self.target_teachers[index], images)
        reversed_features = reverse_gradient(adapted.pooled, dann_lambda(batch.progress))
        domain_logits = self.discriminators[index](reversed_features).squeeze(1)
        is_source = torch.zeros_like(domain_logits)
        is_source[:count] = 1.0
        domain = F.binary_cross_entropy_with_logits(domain_logits, is_source)
        beta = progressive_beta(batch.progress, p["beta_start"], p["beta_end"])
        student_logits = student(images)
        soft = adapted.logits.detach()
        distill = mt_mtda_loss(
            student_logits[count:],
            soft[count:],
            student_logits[:count],
            soft[:count],
            self.cross_entropy(student_logits[:count], labels),
            p["alpha"],
            beta,
            p["temperature"],
        )
        teacher_ce = self.cross_entropy(adapted.logits[:count], labels)
        return {
            "distill": distill,
            "teacher_ce": (1 - beta) * teacher_ce,
            "teacher_domain": (1 - beta) * p["teacher_domain_weight"] * domain,
        }
