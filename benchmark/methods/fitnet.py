"""`fitnet`: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

A thin student is guided by an intermediate "hint" of the teacher: a regressor maps the
student's middle stage onto the teacher's middle stage, and their mean squared difference is
minimised. Here the hint is the stage at relative depth 1/2 of each network (see
`adapters`), the regressor a 1x1 conv + BN to the teacher's channels, and the student map is
resized to the teacher's spatial size first. Defaults follow RepDistiller's CIFAR-100
benchmark (Tian et al. 2020), which trains hint and task jointly: CE weight 1, hint weight
100; the weight suits CIFAR-scale feature magnitudes and is kept as published.

The hint term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import (
    MIDDLE,
    conv_adapter,
    probe_pair,
    resize_to,
    stage_at_depth,
)
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


def fitnet_loss(regressed_student: torch.Tensor, teacher_hint: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the regressed student map and the teacher's hint."""
    return F.mse_loss(regressed_student, teacher_hint)


@METHODS.register("fitnet")
class FitNet(Method):
    family = "feature"
    paper = "Romero et al. ICLR 2015, FitNets: Hints for Thin Deep Nets"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"ce_weight": 1.0, "weight": 100.0}
    search = {
        "weight": log_uniform(10.0, 1000.0, "a decade either side of RepDistiller's 100"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        student_probe, teacher_probe = probe_pair(student, teacher, batch)
        self.student_stage = stage_at_depth(len(student_probe.stages), MIDDLE)
        self.teacher_stage = stage_at_depth(len(teacher_probe.stages), MIDDLE)
        in_channels = student_probe.stages[self.student_stage].shape[1]
        out_channels = teacher_probe.stages[self.teacher_stage].shape[1]
        self.regressor = conv_adapter(in_channels, out_channels).to(batch.source_images.device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        hint = teacher_out.stages[self.teacher_stage]
        guided = resize_to(student_out.stages[self.student_stage], hint.shape[-2:])
        fitnet = fitnet_loss(self.regressor(guided), hint)
        return {
            "ce": self.params["ce_weight"] * step.source_ce,
            "fitnet": self.params["weight"] * fitnet,
        }
