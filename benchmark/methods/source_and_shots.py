"""`source_and_shots`: the student learns from the source labels and the labelled target
images the protocol grants, joined (no teacher, no unlabelled target).

The baseline a semi-supervised method must beat (Saito et al., ICCV 2019, "Semi-supervised
Domain Adaptation via Minimax Entropy", train their "S+T" baseline on the labelled source and
target images together): under few-shot it tells what the shots alone are worth, so MME's and
fine-tuning's gains over it, not over `source_only` (which never sees a shot), are theirs.
Cross-entropy on labelled source images plus cross-entropy on the labelled target images,
weights 1 and 1.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import Batch, Method
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform


@METHODS.register("source_and_shots")
class SourceAndShots(Method):
    family = "baseline"
    paper = "Saito et al. ICCV 2019's S+T baseline: cross-entropy on source and labelled target"
    needs = Needs(teacher=None, target_labels="few")
    defaults = {"source_weight": 1.0, "target_weight": 1.0}
    search = {
        "target_weight": log_uniform(
            0.1, 10.0, "the shots' weight beside the source's 1; a decade either side"
        ),
    }

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        count = len(batch.source_labels)
        logits = student(torch.cat([batch.source_images, batch.labelled_images]))
        return {
            "ce_source": self.params["source_weight"]
            * self.cross_entropy(logits[:count], batch.source_labels),
            "ce_target": self.params["target_weight"]
            * self.cross_entropy(logits[count:], batch.labelled_labels),
        }
