"""`dine`: distillation from a black-box teacher (Liang, Hu, Feng & He, CVPR 2022, "DINE:
Domain Adaptation from Single and Multiple Black-box Predictors").

The teacher is a black box: only its class probabilities on target images are read, never its
features or gradients, and no source image is used. DINE's distillation target is a memory of
the teacher's predictions after adaptive label smoothing (keep the top-k probabilities, k=1,
spread the rest of the mass uniformly), moved towards the student's own predictions by an EMA
(0.6) at 10 points during training. The student minimises KL(memory || student), plus
information maximisation (mean prediction entropy minus entropy of the mean prediction,
weight 1), plus mixup consistency: on a mix lam * x_i + (1 - lam) * x_j of target images,
lam ~ Beta(0.3, 0.3), the student should predict the same mix of its own predictions
(weight 1). These are the defaults of the paper and its code.

Deviations: our batches carry no sample indices, so there is no per-image memory. After n of
the 10 memory updates DINE's memory is 0.6^n * teacher + (1 - 0.6^n) * (EMA of the student's
past predictions); here the student's current prediction (detached) stands in for that
average, with n = floor(10 * progress). DINE's second stage (fine-tuning with information
maximisation only) and its bottleneck/weight-norm student head are left out: the suite's
students are used as they are, in one training loop.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.parts import method_seed
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform, uniform


def adaptive_label_smoothing(probs: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep each row's top-k probabilities; share the remaining mass equally among the rest."""
    num_classes = probs.shape[1]
    top_k = min(top_k, num_classes)
    top_values, top_indices = probs.topk(top_k, dim=1)
    rest = (1 - top_values.sum(dim=1, keepdim=True)) / max(num_classes - top_k, 1)
    return rest.expand_as(probs).scatter(1, top_indices, top_values)


def memory_target(
    smoothed_teacher: torch.Tensor, student_probs: torch.Tensor, updates: int, momentum: float
) -> torch.Tensor:
    """The memory after `updates` EMA steps towards the student: the teacher keeps
    momentum^updates of the weight."""
    kept = momentum**updates
    return kept * smoothed_teacher + (1 - kept) * student_probs


def information_maximisation_loss(probs: torch.Tensor) -> torch.Tensor:
    """Confident individual predictions (low mean entropy), diverse over the batch (high
    entropy of the mean prediction)."""
    return torch.special.entr(probs).sum(dim=1).mean() - torch.special.entr(probs.mean(0)).sum()


@METHODS.register("dine")
class DINE(Method):
    family = "cross-domain"
    paper = "Liang et al. CVPR 2022, DINE: Domain Adaptation from Black-box Predictors"
    needs = Needs(teacher="probabilities", target_images=True)
    defaults = {
        "top_k": 1,
        "memory_momentum": 0.6,
        "memory_updates": 10,
        "im_weight": 1.0,
        "mix_weight": 1.0,
        "mix_alpha": 0.3,
    }
    search = {
        "top_k": int_uniform(1, 3, "classes kept by the label smoothing: the paper's 1, up to 3"),
        "memory_momentum": uniform(0.3, 0.9, "the memory's EMA, around the paper's 0.6"),
        "im_weight": log_uniform(0.1, 10.0, "a decade either side of the paper's 1"),
        "mix_weight": log_uniform(0.1, 10.0, "a decade either side of the paper's 1"),
        "mix_alpha": log_uniform(0.1, 10.0, "DomainBed's Mixup alpha range, 10^U(-1, 1)"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        self.rng = np.random.default_rng(method_seed())

    def get_extra_state(self) -> dict:
        """The mixup draws' generator, saved in checkpoints so a resumed run draws on."""
        return {"rng": self.rng.bit_generator.state} if hasattr(self, "rng") else {}

    def set_extra_state(self, state: dict) -> None:
        if state:
            self.rng.bit_generator.state = state["rng"]

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        images = batch.target_images
        logits = student(images)
        probs = F.softmax(logits, dim=1)
        with torch.no_grad():
            smoothed = adaptive_label_smoothing(teacher.probabilities(images), self.params["top_k"])
            updates = math.floor(self.params["memory_updates"] * batch.progress)
            memory = memory_target(
                smoothed, probs.detach(), updates, self.params["memory_momentum"]
            )
        distill = F.kl_div(F.log_softmax(logits, dim=1), memory, reduction="batchmean")
        lam = float(self.rng.beta(self.params["mix_alpha"], self.params["mix_alpha"]))
        order = torch.as_tensor(self.rng.permutation(len(images)), device=images.device)
        mixed_images = lam * images + (1 - lam) * images[order]
        mixed_probs = (lam * probs + (1 - lam) * probs[order]).detach()
        mixed_log_probs = F.log_softmax(student(mixed_images), dim=1)
        mix = F.kl_div(mixed_log_probs, mixed_probs, reduction="batchmean")
        return {
            "distill": distill,
            "im": self.params["im_weight"] * information_maximisation_loss(probs),
            "mix": self.params["mix_weight"] * mix,
        }
