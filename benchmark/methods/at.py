"""`at`: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.

The student matches where the teacher looks: a stage's spatial attention map is the
channel mean of |f|^p, flattened and L2-normalised, and the loss is the mean squared
difference of the two maps. Channel counts need not match, so AT needs no adapter; where
spatial sizes differ, the larger map is average-pooled to the smaller first (as RepDistiller
does). Defaults: p=2, weight 1000, CE weight 1 (the paper's CIFAR setting; the weight suits
CIFAR-scale maps and is kept as published).

Stages are the matched pairs of `adapters.stage_pairs`: the networks' stages but a stem (a
ResNet's `act1`, see `adapters`), as the peers' code leaves the stem out (RepDistiller's
`feat[1:-1]`, mdistiller's `feats[1:]`); and of those, not the pairs whose common size is 1x1
(a one-pixel attention map normalises to 1 whatever the features: nothing to match).
Deviation: the per-stage losses are averaged, not summed as in the paper's code, so the
weight means the same whether a pair of networks matches two stages or five.

The AT term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import resize_to, smaller_size, spatial_pairs
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform


def attention_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    """(B, H*W): channel mean of |f|^p, L2-normalised per image."""
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(
    student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor], p: float
) -> torch.Tensor:
    """Mean over stage pairs of the mean squared attention difference at the smaller size."""
    per_stage = []
    for student_map, teacher_map in zip(student_maps, teacher_maps, strict=True):
        size = smaller_size(student_map, teacher_map)
        student_attention = attention_map(resize_to(student_map, size), p)
        teacher_attention = attention_map(resize_to(teacher_map, size), p)
        per_stage.append((student_attention - teacher_attention).pow(2).mean())
    return torch.stack(per_stage).mean()


@METHODS.register("at")
class AT(Method):
    family = "feature"
    paper = "Zagoruyko & Komodakis ICLR 2017, Paying More Attention to Attention"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"p": 2.0, "ce_weight": 1.0, "weight": 1000.0}
    search = {
        "p": uniform(1.0, 4.0, "the attention map's power: the paper's 2, between 1 and 4"),
        "weight": log_uniform(100.0, 10000.0, "a decade either side of the paper's 1000"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        self.pairs = spatial_pairs(
            student, teacher, batch, "at", "attention map", without_stem=True
        )

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        student_maps = [student_out.stages[s] for s, _ in self.pairs]
        teacher_maps = [teacher_out.stages[t] for _, t in self.pairs]
        at = at_loss(student_maps, teacher_maps, self.params["p"])
        return {"ce": self.params["ce_weight"] * step.source_ce, "at": self.params["weight"] * at}
