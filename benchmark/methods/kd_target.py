"""`kd_target`: cross-entropy on labelled source images, KD on unlabelled target images only.

Hinton et al. 2015's loss, KL(softmax(z_t/T) || softmax(z_s/T)) * T^2, applied where the
student will be used: the teacher's soft labels are its knowledge *about the target domain*,
while source labels carry the supervised signal (a common cross-domain KD baseline, e.g.
Orbes-Arteaga et al. 2019, "Knowledge distillation for semi-supervised domain adaptation").
Set beside `kd` (which distils on source and target images), it isolates where the teacher's
soft labels help. Defaults are `kd`'s: T=4, 0.1 * CE + 0.9 * KD. Target labels, where the
protocol grants them, are not used.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import KD, kd_loss
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs


@METHODS.register("kd_target")
class KDTarget(Method):
    family = "cross-domain"
    paper = "Hinton et al. 2015 KD, applied to unlabelled target images only"
    needs = Needs(target_images=True)
    defaults = {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}
    search = KD.search

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        logits = student(batch.all_images())
        source_count = len(batch.source_labels)
        teacher_logits = teacher(batch.target_images)
        ce = self.cross_entropy(logits[:source_count], batch.source_labels)
        kd = kd_loss(logits[source_count:], teacher_logits, self.params["temperature"])
        return {"ce": self.params["ce_weight"] * ce, "kd": self.params["kd_weight"] * kd}
