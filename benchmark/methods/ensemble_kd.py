"""`ensemble_kd`: KD from the teachers' ensemble of softened distributions.

You, Xu, Xu & Tao, "Learning from Multiple Teacher Networks", KDD 2017; Fukuda et al.,
"Efficient Knowledge Distillation from an Ensemble of Teachers", Interspeech 2017. Several
teachers err on different images, so the average of their softened distributions is a
better-calibrated and more accurate soft target than any one of them (the reason ensembles
work), and a single student can absorb it: the student matches
p_ens = sum_k w_k softmax(z_k / T), KL(p_ens || softmax(z_s / T)) * T^2, batch mean, on every
image (source and unlabelled target), beside cross-entropy on the source labels.

Defaults are `kd`'s (Hinton et al. 2015, CIFAR setting: T=4, 0.1 * CE + 0.9 * KD), with
`weighting`: `uniform` (w_k = 1/K, both papers' plain average, the default) or `confidence`
(per image, each teacher weighted by its top softened probability, normalised over the
teachers: a teacher sure of an image speaks louder there).

Difference from `kd` under several teachers: `kd` distils from the mean of the teachers'
logits (the `Teachers` ensemble view), this method from the mean of their probabilities, as
both papers do. Teachers of class subsets (per-task teachers) are supported: each teacher's
distribution over its own classes is placed in the student's columns (zero elsewhere) and the
rows renormalised. Simplification: You et al. also match intermediate representations through
a relative-dissimilarity loss; only the soft-target part is implemented here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import KD
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import choice

WEIGHTINGS = ("uniform", "confidence")


def ensemble_distribution(
    member_logits: torch.Tensor, temperature: float, weighting: str
) -> torch.Tensor:
    """sum_k w_k softmax(z_k / T) over the teachers (dim 0 of (K, B, C) logits; -inf for a
    class a teacher does not know), rows renormalised."""
    probs = F.softmax(member_logits / temperature, dim=-1)
    if weighting == "uniform":
        weights = probs.new_full(probs.shape[:2], 1.0 / len(probs))
    else:
        top = probs.max(dim=-1).values
        weights = top / top.sum(dim=0, keepdim=True)
    mixed = (weights.unsqueeze(-1) * probs).sum(dim=0)
    return mixed / mixed.sum(dim=1, keepdim=True)


def ensemble_kd_loss(
    student_logits: torch.Tensor, member_logits: torch.Tensor, temperature: float, weighting: str
) -> torch.Tensor:
    """KL(p_ens || softmax(z_s / T)) * T^2, batch mean (0 log 0 = 0 where p_ens is 0)."""
    target = ensemble_distribution(member_logits, temperature, weighting)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    kl = (torch.special.xlogy(target, target) - target * log_student).sum(dim=1)
    return kl.mean() * temperature**2


@METHODS.register("ensemble_kd")
class EnsembleKD(Method):
    family = "multi-teacher"
    paper = "You et al. KDD 2017, Learning from Multiple Teacher Networks (ensemble KD)"
    needs = Needs(teacher="logits", teachers="several")
    defaults = {**KD.defaults, "weighting": "uniform"}
    search = {
        **KD.search,
        "weighting": choice(list(WEIGHTINGS), "both papers' plain mean, or by confidence"),
    }

    def __init__(self, name: str, label_smoothing: float = 0.0, **params) -> None:
        super().__init__(name, label_smoothing, **params)
        if self.params["weighting"] not in WEIGHTINGS:
            raise XdkdError(
                f"method '{name}': weighting must be one of {', '.join(WEIGHTINGS)}, "
                f"not '{self.params['weighting']}'"
            )

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        images = batch.all_images()
        student_logits = student(images)
        member_logits = teacher.place(teacher.member_logits(images), float("-inf"))
        p = self.params
        kd = ensemble_kd_loss(student_logits, member_logits, p["temperature"], p["weighting"])
        source_count = len(batch.source_labels)
        ce = self.cross_entropy(student_logits[:source_count], batch.source_labels)
        return {"ce": p["ce_weight"] * ce, "kd": p["kd_weight"] * kd}
