"""`finetune`: the student starts from the teacher's weights and is trained on labelled data.

Transfer learning by fine-tuning (Yosinski et al., "How transferable are features in deep
neural networks?", NeurIPS 2014). The harness gives it a student of the teacher's own
architecture (`student_is_teacher_architecture`), so it is the teacher fine-tuned: every
student tensor (parameters and BatchNorm buffers) whose name and shape match one of the
teacher's is copied in `setup` (all of them for the same architecture; used directly on
another pair it copies only what they share, and a warning says how many), then
the whole student is trained with cross-entropy on labelled target images plus labelled source
images (weights 1 and 1; the source term keeps the source domain, which the suite also
scores). It needs target labels, so it runs under `labelled_target` only.
"""

from __future__ import annotations

import logging
import warnings

from torch import nn

from benchmark.methods.base import Batch
from benchmark.methods.parts import copy_matching_weights
from benchmark.methods.registry import METHODS
from benchmark.methods.source_and_shots import SourceAndShots
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs

log = logging.getLogger(__name__)


@METHODS.register("finetune")
class Finetune(SourceAndShots):
    """`source_and_shots`' loss from the teacher's weights."""

    family = "transfer"
    paper = "Yosinski et al. NeurIPS 2014: initialise from the teacher, fine-tune on labels"
    needs = Needs(teacher="features", teachers="one", target_labels="few")
    student_is_teacher_architecture = True

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        self.copied_tensors = copy_matching_weights(teacher.module(), student)
        copied, total = len(self.copied_tensors), len(student.state_dict())
        message = f"{self.name}: copied {copied} of {total} student tensors from the teacher"
        if copied < total:
            warnings.warn(f"{message}; the rest keep their random initialisation", stacklevel=2)
        else:
            log.info(message)
