"""`vid`: Ahn et al., "Variational Information Distillation for Knowledge Transfer", CVPR 2019.

Maximising a variational lower bound on the mutual information between teacher and student
features: the teacher's map is modelled as a Gaussian whose mean a regressor predicts from
the student's map and whose variance is learned per teacher channel, sigma^2 =
softplus(raw) + eps; the loss is the Gaussian negative log-likelihood (constants dropped),
mean over all positions, 0.5 * ((mu - t)^2 / sigma^2 + log sigma^2). The regressor is three
1x1 convs with ReLUs (hidden width = teacher channels), as in the authors' code. Defaults:
initial variance 5, eps 1e-5, weight 1, CE weight 1.

Stages are the matched pairs of `adapters.match_stages`, each with its own regressor and
variances; where spatial sizes differ the larger map is pooled to the smaller (as the
authors' code does). Deviation: per-stage losses are averaged rather than summed, so the
weight means the same for any number of matched stages.

The VID term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import (
    match_stages,
    probe_pair,
    resize_to,
    smaller_size,
)
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


def vid_loss(
    predicted_mean: torch.Tensor, target: torch.Tensor, raw_variance: torch.Tensor, eps: float
) -> torch.Tensor:
    """Gaussian NLL of `target` (B, C, H, W), variance softplus(raw_variance) + eps per channel."""
    variance = (F.softplus(raw_variance) + eps).view(1, -1, 1, 1)
    return 0.5 * ((predicted_mean - target).pow(2) / variance + variance.log()).mean()


def mean_regressor(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1, bias=False),
    )


@METHODS.register("vid")
class VID(Method):
    family = "feature"
    paper = "Ahn et al. CVPR 2019, Variational Information Distillation for Knowledge Transfer"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"init_variance": 5.0, "eps": 1e-5, "ce_weight": 1.0, "weight": 1.0}
    search = {
        "init_variance": log_uniform(1.0, 25.0, "a factor 5 either side of the authors' 5"),
        "weight": log_uniform(0.1, 10.0, "a decade either side of the authors' 1"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        student_probe, teacher_probe = probe_pair(student, teacher, batch)
        self.pairs = match_stages(len(student_probe.stages), len(teacher_probe.stages))
        channels = [
            (student_probe.stages[s].shape[1], teacher_probe.stages[t].shape[1])
            for s, t in self.pairs
        ]
        device = batch.source_images.device
        self.regressors = nn.ModuleList(mean_regressor(i, o) for i, o in channels).to(device)
        # softplus(raw) + eps = init_variance at the start
        raw = math.log(math.expm1(self.params["init_variance"] - self.params["eps"]))
        self.raw_variances = nn.ParameterList(
            nn.Parameter(torch.full((o,), raw, device=device)) for _, o in channels
        )

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        per_stage = []
        for (s, t), regressor, raw in zip(
            self.pairs, self.regressors, self.raw_variances, strict=True
        ):
            size = smaller_size(student_out.stages[s], teacher_out.stages[t])
            predicted = regressor(resize_to(student_out.stages[s], size))
            target = resize_to(teacher_out.stages[t], size)
            per_stage.append(vid_loss(predicted, target, raw, self.params["eps"]))
        vid = torch.stack(per_stage).mean()
        return {"ce": self.params["ce_weight"] * step.source_ce, "vid": self.params["weight"] * vid}
