"""`feature_transfer`: a linear classifier trained on the frozen teacher's pooled features.

Transfer by fixed features (Donahue et al., "DeCAF", ICML 2014; the "linear probe" of
Kornblith et al., "Do Better ImageNet Models Transfer Better?", CVPR 2019): the teacher's
embedding is kept as it is and only a linear head learns, with cross-entropy on labelled
target images plus labelled source images (weights 1 and 1). It needs target labels, so it
runs under `labelled_target` only.

What is evaluated: the teacher's network with the new head. The harness evaluates the student
it built, so the method asks for a student of the teacher's architecture
(`student_is_teacher_architecture`; the suite lists the teacher's backbone, same kwargs, as
the student): `setup` copies every teacher tensor into it, freezes all but the classifier, and
fails with an error naming the mismatch for any other student. The head starts from the
teacher's own head (the problem is convex in the head, so the start changes speed, not the
optimum); the features come from the frozen teacher in eval mode, so the student's frozen
body, a copy that never runs during training, keeps the teacher's BatchNorm statistics.
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


def mismatched_tensors(student: nn.Module, teacher: nn.Module) -> list[str]:
    """State entries that one network lacks or that differ in shape."""
    student_state, teacher_state = student.state_dict(), teacher.state_dict()
    return sorted(
        name
        for name in student_state.keys() | teacher_state.keys()
        if name not in student_state
        or name not in teacher_state
        or student_state[name].shape != teacher_state[name].shape
    )


@METHODS.register("feature_transfer")
class FeatureTransfer(Method):
    family = "transfer"
    paper = "Donahue et al. ICML 2014 (DeCAF): a linear head on frozen teacher features"
    needs = Needs(teacher="features", teachers="one", target_labels="few")
    defaults = {"source_weight": 1.0, "target_weight": 1.0}
    search = {
        "target_weight": log_uniform(
            0.1, 10.0, "the shots' weight beside the source's 1; a decade either side"
        ),
    }
    # The student must be the teacher's architecture: it becomes the teacher plus a new head.
    student_is_teacher_architecture = True

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        network = teacher.module()
        mismatched = mismatched_tensors(student, network)
        if mismatched:
            raise XdkdError(
                f"method '{self.name}' evaluates the teacher's network with a new head, so the "
                f"student must have the teacher's architecture; {len(mismatched)} tensors "
                f"differ (first: '{mismatched[0]}'): list the teacher's backbone as the student"
            )
        student.load_state_dict(network.state_dict())
        student.requires_grad_(False)
        student.get_classifier().requires_grad_(True)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        count = len(batch.source_labels)
        images = torch.cat([batch.source_images, batch.labelled_images])
        logits = student.get_classifier()(teacher.outputs(images).pooled)
        return {
            "ce_source": self.params["source_weight"]
            * self.cross_entropy(logits[:count], batch.source_labels),
            "ce_target": self.params["target_weight"]
            * self.cross_entropy(logits[count:], batch.labelled_labels),
        }
