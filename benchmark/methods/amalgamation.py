"""`amalgamation`: CFL, Luo et al., "Knowledge Amalgamation from Heterogeneous Networks by
Common Feature Learning", IJCAI 2019.

Teachers each know a subset of the classes (one per task); the student must predict their
union, from unlabelled images alone. Matching the teachers' concatenated logits transfers
their decisions, but the teachers' features live in unrelated spaces (other architectures,
other tasks), so the student cannot imitate them directly. CFL maps the student's features
and every teacher's into one learned common space and pulls the student's distribution
towards each teacher's there (multi-kernel MMD), while a decoder per teacher must rebuild
the teacher's features from its common features, so the common space cannot collapse and
keeps what each teacher knows.

Loss, on every image of the batch (source and target images; labels unused):
  kd_weight * KL(softmax(z_t) || softmax(z_s)) at T (z_t: the teachers' logits placed in
  the student's columns, their concatenation for disjoint tasks, the mean where teachers
  share a class)
  + mmd_weight * sum_k MMD^2(E_s(f_s), E_k(f_k))
  + reconstruction_weight * sum_k MSE(D_k(E_k(f_k)), f_k)
  + ce_weight * CE on the labelled source images.
f are pooled features; E_s, E_k linear encoders into a common space of dimension d, D_k
linear decoders back to teacher k's features, all sized from a probe batch in `setup`.
Defaults: weights 1, 1, 1 (the paper); T=1 (the CFL code's soft cross-entropy at T=1, whose
gradient equals that of this KL); d=128 (the code's common channels); ce_weight 0 (CFL uses
no labels).

Deviations: CFL aligns the last convolutional maps with 1x1 convs, a shared extractor of
three residual blocks and conv decoders; here linear maps on pooled features (any backbone,
ViTs included). Its MMD uses fixed bandwidths (0.001 to 2 on normalised features); here
`parts.gaussian_mmd`, DAN's five bandwidths scaled to the batch's mean squared distance
(kernel_mul 2, kernel_num 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import gaussian_mmd, probe_outputs
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform


def common_space_mmd(
    student_common: torch.Tensor,
    teacher_common: Sequence[torch.Tensor],
    kernel_mul: float,
    kernel_num: int,
) -> torch.Tensor:
    """sum over teachers of the multi-kernel MMD^2 between the student's common features
    (B, d) and that teacher's (B, d)."""
    return sum(gaussian_mmd(student_common, h, kernel_mul, kernel_num) for h in teacher_common)


def reconstruction_loss(
    reconstructed: Sequence[torch.Tensor], teacher_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """sum over teachers of the mean squared error of the rebuilt features."""
    return sum(F.mse_loss(r, f) for r, f in zip(reconstructed, teacher_features, strict=True))


@METHODS.register("amalgamation")
class Amalgamation(Method):
    family = "multi-teacher"
    paper = "Luo et al. IJCAI 2019, Knowledge Amalgamation by Common Feature Learning (CFL)"
    needs = Needs(teacher="features", teachers="tasks")
    defaults = {
        "temperature": 1.0,
        "kd_weight": 1.0,
        "mmd_weight": 1.0,
        "reconstruction_weight": 1.0,
        "ce_weight": 0.0,
        "common_dim": 128,
        "kernel_mul": 2.0,
        "kernel_num": 5,
    }
    search = {
        "temperature": log_uniform(1.0, 8.0, "CFL's code at 1; KD practice up to 8"),
        "kd_weight": log_uniform(0.1, 10.0, "CFL's weights are 1, 1, 1; a decade either side"),
        "mmd_weight": log_uniform(0.1, 10.0, "CFL's weights are 1, 1, 1; a decade either side"),
        "reconstruction_weight": log_uniform(
            0.1, 10.0, "CFL's weights are 1, 1, 1; a decade either side"
        ),
        "common_dim": int_uniform(
            32, 512, "the common space's width: a factor 4 either side of the code's 128"
        ),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        images = batch.all_images()[:2]
        dim = self.params["common_dim"]
        student_dim = probe_outputs(student, images).pooled.shape[1]
        self.student_encoder = nn.Linear(student_dim, dim).to(images.device)
        self.teacher_encoders, self.teacher_decoders = nn.ModuleList(), nn.ModuleList()
        for name in teacher.names:
            teacher_dim = teacher.outputs(images, name).pooled.shape[1]
            self.teacher_encoders.append(nn.Linear(teacher_dim, dim).to(images.device))
            self.teacher_decoders.append(nn.Linear(dim, teacher_dim).to(images.device))

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        p = self.params
        images = batch.all_images()
        student_out = forward_outputs(student, images)
        outputs = {name: teacher.outputs(images, name) for name in teacher.names}
        teacher_logits = teacher.combine({n: o.logits for n, o in outputs.items()})
        kd = kd_loss(student_out.logits, teacher_logits, p["temperature"])
        features = [o.pooled for o in outputs.values()]
        common = [encode(f) for encode, f in zip(self.teacher_encoders, features, strict=True)]
        rebuilt = [decode(h) for decode, h in zip(self.teacher_decoders, common, strict=True)]
        student_common = self.student_encoder(student_out.pooled)
        mmd = common_space_mmd(student_common, common, p["kernel_mul"], p["kernel_num"])
        source_count = len(batch.source_labels)
        ce = self.cross_entropy(student_out.logits[:source_count], batch.source_labels)
        return {
            "kd": p["kd_weight"] * kd,
            "mmd": p["mmd_weight"] * mmd,
            "reconstruction": p["reconstruction_weight"] * reconstruction_loss(rebuilt, features),
            "ce": p["ce_weight"] * ce,
        }
