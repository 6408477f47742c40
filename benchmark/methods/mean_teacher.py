"""`mean_teacher`: self-ensembling (French, Mackiewicz & Fisher, ICLR 2018), plus KD.

French et al. adapt Tarvainen & Valpola's mean teacher to domain adaptation: an EMA copy of
the student (decay 0.99) predicts on a differently augmented view of each target image; the
student's probabilities are pulled towards it by a squared difference (mean over classes),
counted only where the EMA's top probability exceeds 0.968 (confidence thresholding), with
weight 3, beside cross-entropy on source labels (weight 1); a class-balance term (weight
0.005: binary cross-entropy between the batch's mean prediction and uniform, scaled by the
fraction of confident samples) keeps the student from collapsing onto a few classes. As in
their code, source and target batches pass through the student separately (per-domain
BatchNorm statistics) and the EMA copy runs in training mode.

Decision: this suite is about distillation, so by default the source-trained teacher is used
too, as `kd` uses it (Hinton et al. 2015, T=4) with weight 1 on source and target images;
`kd_weight: 0` gives French et al.'s method exactly (the teacher is then never run).

Deviations: the EMA's view is the loop's (possibly augmented) target batch augmented again by
the suite's own affine and intensity jitter, not French et al.'s Gaussian noise and affine
settings; the EMA copy is updated at the start of each step from the student after the
previous step, which is the same sequence of EMA weights as updating after each step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.tensors import augment
from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import EmaCopy, method_seed
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform


def confidence_mask(teacher_probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where the EMA teacher's top class probability exceeds the threshold, else 0."""
    return (teacher_probs.max(dim=1).values > threshold).float()


def self_ensembling_loss(
    student_probs: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-sample mean squared difference over classes, masked, averaged over the whole batch
    (masked samples count in the denominator, as in French et al.'s code)."""
    return ((student_probs - teacher_probs).pow(2).mean(dim=1) * mask).mean()


def class_balance_loss(student_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the mean predicted probability of each class against 1/K,
    summed over classes (mean times K), scaled by the fraction of confident samples."""
    mean_probs = student_probs.mean(dim=0)
    uniform = 1.0 / len(mean_probs)
    bce = -(
        uniform * torch.log(mean_probs + 1e-6) + (1 - uniform) * torch.log(1 - mean_probs + 1e-6)
    )
    return bce.mean() * len(mean_probs) * mask.mean()


@METHODS.register("mean_teacher")
class MeanTeacher(Method):
    family = "cross-domain"
    paper = "French et al. ICLR 2018, Self-ensembling for visual domain adaptation (+ KD)"
    needs = Needs(target_images=True)
    defaults = {
        "ema_decay": 0.99,
        "confidence_threshold": 0.968,
        "unsupervised_weight": 3.0,
        "class_balance_weight": 0.005,
        "ce_weight": 1.0,
        "kd_weight": 1.0,
        "temperature": 4.0,
    }
    search = {
        "ema_decay": uniform(0.9, 0.999, "French et al.'s 0.99; mean teachers use 0.99-0.999"),
        "confidence_threshold": uniform(0.8, 0.99, "French et al.'s 0.968; FixMatch's 0.95"),
        "unsupervised_weight": log_uniform(0.3, 30.0, "a decade either side of French et al.'s 3"),
        "class_balance_weight": log_uniform(
            5e-4, 5e-2, "a decade either side of French et al.'s 0.005"
        ),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        self.ema = EmaCopy(student, self.params["ema_decay"])
        self.view_generator = torch.Generator().manual_seed(method_seed())

    def get_extra_state(self) -> dict:
        """The EMA view's augmentation generator, saved in checkpoints."""
        return {"views": self.view_generator.get_state()} if hasattr(self, "view_generator") else {}

    def set_extra_state(self, state: dict) -> None:
        if state:
            self.view_generator.set_state(state["views"])

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        self.ema.update(student)
        source_logits = student(batch.source_images)
        target_logits = student(batch.target_images)
        with torch.no_grad():
            ema_view = augment(batch.target_images, self.view_generator)
            ema_probs = F.softmax(self.ema(ema_view), dim=1)
        student_probs = F.softmax(target_logits, dim=1)
        mask = confidence_mask(ema_probs, self.params["confidence_threshold"])
        unsupervised = self.params["unsupervised_weight"]
        terms = {
            "ce": self.params["ce_weight"] * self.cross_entropy(source_logits, batch.source_labels),
            "consistency": unsupervised * self_ensembling_loss(student_probs, ema_probs, mask),
            "class_balance": unsupervised
            * self.params["class_balance_weight"]
            * class_balance_loss(student_probs, mask),
        }
        if self.params["kd_weight"] > 0:
            teacher_logits = teacher(batch.all_images())
            student_logits = torch.cat([source_logits, target_logits])
            kd = kd_loss(student_logits, teacher_logits, self.params["temperature"])
            terms["kd"] = self.params["kd_weight"] * kd
        return terms
