"""`nst`: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer", arXiv 2017.

Each channel of a stage is a neuron whose spatial response pattern (its selectivity) is one
sample; the student's set of channel samples should be distributed like the teacher's. Each
channel's flattened map is L2-normalised, and the two sets are compared with the squared
maximum mean discrepancy under the polynomial kernel k(x, y) = (x^T y + c)^d, d = 2, c = 0:

    MMD^2 = mean_{i,i'} k(t_i, t_i') + mean_{j,j'} k(s_j, s_j') - 2 mean_{i,j} k(s_j, t_i)

per image (i over the teacher's C_t channels, j over the student's C_s), then the batch mean.
Channel counts need not match, so NST needs no adapter; where spatial sizes differ the larger
map is average-pooled to the smaller (as RepDistiller does). Defaults: weight 50 (RepDistiller's
CIFAR-100 `-b 50`, after the paper's lambda for the polynomial kernel), CE weight 1.

Stages are the matched pairs of `adapters.stage_pairs`: the networks' stages but a stem (a
ResNet's `act1`, see `adapters`), as the peers' code leaves the stem out (RepDistiller's
`feat[1:-1]`, mdistiller's `feats[1:]`); and of those, not the pairs whose common size is 1x1
(a one-pixel channel normalises to its sign: no spatial selectivity to match).
Deviation: the per-stage losses are averaged, not summed as in RepDistiller's code, so the
weight means the same whether a pair of networks matches two stages or five.

The NST term applies to every image of the batch, source and unlabelled target, beside
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
from benchmark.suite.search import log_uniform


def _polynomial_kernel(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(B, C1, C2): (x^T y)^2 between every channel of `first` and every one of `second`."""
    return torch.bmm(first, second.transpose(1, 2)).pow(2)


def nst_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
    """Mean over stage pairs of the batch-mean MMD^2 (polynomial kernel, d = 2, c = 0)
    between the L2-normalised channel maps, at the smaller spatial size."""
    per_stage = []
    for student_map, teacher_map in zip(student_maps, teacher_maps, strict=True):
        size = smaller_size(student_map, teacher_map)
        student = F.normalize(resize_to(student_map, size).flatten(2), dim=2)
        teacher = F.normalize(resize_to(teacher_map, size).flatten(2), dim=2)
        mmd = (
            _polynomial_kernel(teacher, teacher).mean()
            + _polynomial_kernel(student, student).mean()
            - 2 * _polynomial_kernel(student, teacher).mean()
        )
        per_stage.append(mmd)
    return torch.stack(per_stage).mean()


@METHODS.register("nst")
class NST(Method):
    family = "feature"
    paper = (
        "Huang & Wang 2017, Like What You Like: Knowledge Distill via Neuron Selectivity Transfer"
    )
    needs = Needs(teacher="features", teachers="one")
    defaults = {"ce_weight": 1.0, "weight": 50.0}
    search = {
        "weight": log_uniform(5.0, 500.0, "a decade either side of RepDistiller's 50"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        self.pairs = spatial_pairs(
            student, teacher, batch, "nst", "neuron selectivity", without_stem=True
        )

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        nst = nst_loss(
            [student_out.stages[s] for s, _ in self.pairs],
            [teacher_out.stages[t] for _, t in self.pairs],
        )
        return {"ce": self.params["ce_weight"] * step.source_ce, "nst": self.params["weight"] * nst}
