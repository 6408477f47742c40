"""The method interface: one small class per method, the training loop knows none of them.

Per step a method receives the student, the frozen teacher and a `Batch`, and returns named
loss terms; the loop sums and logs them (mdistiller's contract). Hyperparameters are declared
with the paper's defaults in `defaults`; trainable parts of a method's own (adapters,
discriminators) are built in `setup`, from the shapes a probe batch produces, so no pair of
networks needs shape settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.models.features import ModelOutputs, forward_outputs

FAMILIES = ("baseline", "logit", "feature", "cross-domain", "transfer")


@dataclass
class Batch:
    """One training step's data. Target labels are present only under `labelled_target`;
    target images are absent under `zero_shot`."""

    source_images: torch.Tensor
    source_labels: torch.Tensor
    target_images: torch.Tensor | None
    target_labels: torch.Tensor | None
    progress: float  # fraction of training done, 0..1, for ramps and warm-ups

    def all_images(self) -> torch.Tensor:
        """Source images, then target images when the protocol grants them."""
        if self.target_images is None:
            return self.source_images
        return torch.cat([self.source_images, self.target_images])


class Method(nn.Module):
    """Base class: subclasses set the class variables and implement `losses`."""

    family: ClassVar[str]
    paper: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    protocols: ClassVar[tuple[str, ...]] = ("uda", "labelled_target", "zero_shot")
    uses_teacher: ClassVar[bool] = True
    trains_student: ClassVar[bool] = True
    # Only an oracle sees target labels outside the `labelled_target` protocol; its rows are
    # marked as references, never ranked.
    needs_target_labels: ClassVar[bool] = False
    # A method that turns the teacher itself into the evaluated network (feature transfer)
    # gets the teacher's backbone as its student, whatever the suite's students are.
    student_is_teacher_architecture: ClassVar[bool] = False

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(self.defaults) or "none"
            raise XdkdError(
                f"method '{name}' has no parameter '{unknown[0]}'; its parameters: {valid}"
            )
        self.name = name
        self.params = {**self.defaults, **params}

    def setup(self, student: nn.Module, teacher: nn.Module | None, batch: Batch) -> None:
        """Build the method's own trainable parts from a probe batch (none by default)."""

    def losses(
        self, student: nn.Module, teacher: nn.Module | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@dataclass
class DistillationStep:
    """What most distillation losses start from: the student's logits on every image of the
    batch, the frozen teacher's logits on the same images, cross-entropy on the labelled
    source rows and, when asked, both networks' stage and pooled features."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    source_ce: torch.Tensor
    source_count: int
    student_outputs: ModelOutputs | None = None
    teacher_outputs: ModelOutputs | None = None


def distillation_step(
    student: nn.Module, teacher: nn.Module, batch: Batch, features: bool = False
) -> DistillationStep:
    """A training forward of the student and a gradient-free one of the frozen teacher."""
    images = batch.all_images()
    student_outputs = forward_outputs(student, images) if features else None
    student_logits = student_outputs.logits if features else student(images)
    with torch.no_grad():
        teacher_outputs = forward_outputs(teacher, images) if features else None
        teacher_logits = teacher_outputs.logits if features else teacher(images)
    source_count = len(batch.source_labels)
    source_ce = F.cross_entropy(student_logits[:source_count], batch.source_labels)
    return DistillationStep(
        student_logits, teacher_logits, source_ce, source_count, student_outputs, teacher_outputs
    )
