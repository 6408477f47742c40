"""`target_oracle`: the student learns from target labels (and source labels): the upper bound.

Not a distillation method and not a fair competitor: it reads the target labels that every
other method is denied outside `labelled_target`, so its rows are references for how much of
the gap a method closes, never ranked. The idea is the "train on target" row of Ganin et al.
JMLR 2016 (their upper bound). Defaults: both cross-entropies with weight 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS


@METHODS.register("target_oracle")
class TargetOracle(Method):
    family = "baseline"
    paper = "upper bound: cross-entropy on labelled target (and source) images (Ganin et al. 2016)"
    defaults = {"source_weight": 1.0, "target_weight": 1.0}
    protocols = ("uda", "labelled_target")
    uses_teacher = False
    needs_target_labels = True

    def losses(
        self, student: nn.Module, teacher: nn.Module | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        if batch.target_labels is None:
            raise XdkdError(f"method '{self.name}' needs target labels, and the batch has none")
        logits = student(batch.all_images())
        source_logits = logits[: len(batch.source_labels)]
        target_logits = logits[len(batch.source_labels) :]
        return {
            "ce_source": self.params["source_weight"]
            * F.cross_entropy(source_logits, batch.source_labels),
            "ce_target": self.params["target_weight"]
            * F.cross_entropy(target_logits, batch.target_labels),
        }
