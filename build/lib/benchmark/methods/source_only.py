"""`source_only`: the student learns from source labels alone (no teacher, no target data).

The lower bound every distillation method must beat across the shift (Ganin et al. 2016
report it as "source only").
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs


@METHODS.register("source_only")
class SourceOnly(Method):
    family = "baseline"
    paper = "lower bound: cross-entropy on labelled source images"
    needs = Needs(teacher=None)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        return {"ce": self.cross_entropy(student(batch.source_images), batch.source_labels)}
