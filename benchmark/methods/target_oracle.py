"""`target_oracle`: the student learns from target labels (and source labels): the upper bound.

Not a distillation method and not a fair competitor: it reads the target labels that every
other method is denied outside `labelled_target`, so its rows are references for how much of
the gap a method closes, never ranked. The idea is the "train on target" row of Ganin et al.
JMLR 2016 (their upper bound). Defaults: both cross-entropies with weight 1.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


@METHODS.register("target_oracle")
class TargetOracle(Method):
    family = "baseline"
    paper = "upper bound: cross-entropy on labelled target (and source) images (Ganin et al. 2016)"
    needs = Needs(teacher=None, target_images=True, target_labels="all", oracle=True)
    defaults = {"source_weight": 1.0, "target_weight": 1.0}
    search = {
        "target_weight": log_uniform(
            0.1, 10.0, "the target labels' weight beside the source's 1; a decade either side"
        ),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        if batch.labelled_images is None:
            raise XdkdError(f"method '{self.name}' needs target labels, and the batch has none")
        count = len(batch.source_labels)
        logits = student(torch.cat([batch.source_images, batch.labelled_images]))
        return {
            "ce_source": self.params["source_weight"]
            * self.cross_entropy(logits[:count], batch.source_labels),
            "ce_target": self.params["target_weight"]
            * self.cross_entropy(logits[count:], batch.labelled_labels),
        }
