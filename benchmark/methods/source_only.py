"""`source_only`: the student learns from source labels alone (no teacher, no target data).

The lower bound every distillation method must beat across the shift (Ganin et al. 2016
report it as "source only").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS


@METHODS.register("source_only")
class SourceOnly(Method):
    family = "baseline"
    paper = "lower bound: cross-entropy on labelled source images"
    defaults = {"label_smoothing": 0.0}
    uses_teacher = False

    def losses(
        self, student: nn.Module, teacher: nn.Module | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        logits = student(batch.source_images)
        smoothing = self.params["label_smoothing"]
        return {"ce": F.cross_entropy(logits, batch.source_labels, label_smoothing=smoothing)}
