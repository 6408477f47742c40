"""`ab`: Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries
Formed by Hidden Neurons", AAAI 2019.

What a hidden neuron transfers is where it switches on: the student should be active exactly
where the teacher is. A connector (1x1 conv + BN, as the authors' code) maps a student stage
onto the teacher's channels, and the alternative (differentiable) form of the
activation-transfer loss pushes each connected response s past a margin m on the side the
teacher's neuron t is on:

    L = sum_positions ( (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0] )

summed over channels and positions, batch mean, per stage; stages are weighted 2^(i - n + 1)
(i = 0..n-1 shallow to deep: the deepest 1, each shallower one half the next) and summed, as
in the authors' and RepDistiller's code. Defaults: margin 1 (the paper), weight 3e-3 (the
code's `/ 1000 * 3` on that sum), CE weight 1.

Only the sign of the teacher's response matters, and the suite's stage maps are taken after
the ReLU, whose output is positive exactly where its input is, so the teacher's activation
boundaries are intact. Stages are the matched pairs of `adapters.stage_pairs`: the networks'
stages but a stem (a ResNet's `act1`, see `adapters`), as RepDistiller's code connects
`feat[1:-1]`, the stages after the stem; where spatial sizes differ both maps are
average-pooled to the smaller first (a pooled teacher position is active where any of its
pixels is).

Deviations:
- the paper transfers boundaries in a separate initialisation phase (AB loss alone, 30 of
  270 epochs in RepDistiller) and then trains on cross-entropy alone; here both run from the
  start and the AB weight is ramped down linearly, 1 at the start to 0 at `init_fraction`
  (default 30/270) of training, after which only cross-entropy trains the student;
- the paper connects the student's pre-activation responses; the suite exposes stages after
  their activation, so the connector reads those (its BN output takes either sign).

The AB term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.adapters import (
    conv_adapter,
    probe_pair,
    resize_to,
    smaller_size,
    stage_pairs,
)
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform


def ab_loss(
    student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor], margin: float
) -> torch.Tensor:
    """Sum over stages (shallow to deep, weights 2^(i - n + 1)) of the alternative L2
    activation-transfer loss, summed over entries and averaged over the batch; the student
    maps are the connectors' outputs, of the teacher maps' shapes."""
    count = len(student_maps)
    total = student_maps[0].new_zeros(())
    for index, (student, teacher) in enumerate(zip(student_maps, teacher_maps, strict=True)):
        off = (student + margin).pow(2) * ((student > -margin) & (teacher <= 0))
        on = (student - margin).pow(2) * ((student <= margin) & (teacher > 0))
        total = total + 2.0 ** (index - count + 1) * (off + on).sum() / len(student)
    return total


@METHODS.register("ab")
class AB(Method):
    family = "feature"
    paper = (
        "Heo et al. AAAI 2019, Knowledge Transfer via Distillation of Activation Boundaries "
        "Formed by Hidden Neurons"
    )
    needs = Needs(teacher="features", teachers="one")
    defaults = {"margin": 1.0, "ce_weight": 1.0, "weight": 3e-3, "init_fraction": 30 / 270}
    search = {
        "margin": log_uniform(0.25, 4.0, "a factor 4 either side of the paper's margin 1"),
        "weight": log_uniform(3e-4, 3e-2, "a decade either side of the code's 3e-3"),
        "init_fraction": uniform(0.05, 0.3, "RepDistiller's 30 of 270 epochs; 5-30% of training"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        student_probe, teacher_probe = probe_pair(student, teacher, batch)
        self.pairs = stage_pairs(student, teacher, student_probe, teacher_probe)
        self.connectors = nn.ModuleList(
            conv_adapter(student_probe.stages[s].shape[1], teacher_probe.stages[t].shape[1])
            for s, t in self.pairs
        ).to(batch.source_images.device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_out, teacher_out = step.student_outputs, step.teacher_outputs
        connected, targets = [], []
        for (s, t), connector in zip(self.pairs, self.connectors, strict=True):
            size = smaller_size(student_out.stages[s], teacher_out.stages[t])
            connected.append(connector(resize_to(student_out.stages[s], size)))
            targets.append(resize_to(teacher_out.stages[t], size))
        ab = ab_loss(connected, targets, self.params["margin"])
        fraction = self.params["init_fraction"]
        ramp = max(0.0, 1.0 - batch.progress / fraction) if fraction > 0 else 0.0
        return {
            "ce": self.params["ce_weight"] * step.source_ce,
            "ab": ramp * self.params["weight"] * ab,
        }
