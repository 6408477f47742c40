"""The method interface: one small class per method, the training loop knows none of them.

Per step a method receives the student, the run's `Teachers` and a `Batch`, and returns named
loss terms; the loop sums and logs them (mdistiller's contract). Hyperparameters are declared
with the paper's defaults in `defaults`, and the ranges worth searching in `search`; what a
method needs of a setting (target images or labels, the teachers' features, several teachers or
targets) in `needs`, against which every protocol's grants are checked when a suite expands
(`benchmark.suite.protocols`). Trainable parts of a method's own (adapters, discriminators) are
built in `setup`, from the shapes a probe batch produces, so no pair of networks needs shape
settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods.teachers import Teachers
from benchmark.models.features import ModelOutputs, forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import Distribution

FAMILIES = (
    "baseline",
    "logit",
    "feature",
    "cross-domain",
    "transfer",
    "multi-teacher",
    "self-supervised",
    "generative-adversarial",
    "meta-learning",
)


@dataclass
class DomainBatch:
    """One domain's minibatch (or one task's): images and, where granted, labels."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor | None = None


@dataclass
class Synthetic:
    """What a data-free step may make instead of real images (`data_free` protocol): `count`
    images of `shape` (channels, height, width) in the students' input range [-1, 1], their
    latent codes drawn from `generator` (the run's, saved in checkpoints, so a resumed run
    draws the same codes)."""

    count: int
    shape: tuple[int, int, int]
    generator: torch.Generator

    def latent(self, dim: int) -> torch.Tensor:
        """A (count, dim) standard normal draw, on the generator's device."""
        return torch.randn(self.count, dim, generator=self.generator, device=self.generator.device)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass
class Batch:
    """One training step's data, one minibatch per domain (DomainBed's `minibatches`).

    sources: labelled, one per source domain (or task); targets: unlabelled target images, one
    per target (none under zero_shot and in_domain); labelled_target: the labelled target
    images the protocol grants (few-shot shots, or every target image), one per target;
    synthetic: under `data_free`, where every list is empty, what the step may generate.
    `source_images`, `source_labels` and `target_images` join the domains for the methods
    that treat them as one; `progress` is the fraction of training done, for ramps."""

    sources: list[DomainBatch]
    targets: list[DomainBatch] = field(default_factory=list)
    labelled_target: list[DomainBatch] = field(default_factory=list)
    progress: float = 0.0
    synthetic: Synthetic | None = None

    @classmethod
    def single(
        cls,
        source_images: torch.Tensor,
        source_labels: torch.Tensor,
        target_images: torch.Tensor | None = None,
        target_labels: torch.Tensor | None = None,
        progress: float = 0.0,
    ) -> Batch:
        """One source and one target; target labels, when given, as the labelled target."""
        targets = [] if target_images is None else [DomainBatch("target", target_images)]
        labelled = (
            [DomainBatch("target", target_images, target_labels)]
            if target_labels is not None
            else []
        )
        return cls(
            [DomainBatch("source", source_images, source_labels)], targets, labelled, progress
        )

    @cached_property
    def source_images(self) -> torch.Tensor:
        return _cat([b.images for b in self.sources])

    @cached_property
    def source_labels(self) -> torch.Tensor:
        return _cat([b.labels for b in self.sources])

    @cached_property
    def target_images(self) -> torch.Tensor | None:
        return _cat([b.images for b in self.targets]) if self.targets else None

    @cached_property
    def labelled_images(self) -> torch.Tensor | None:
        return _cat([b.images for b in self.labelled_target]) if self.labelled_target else None

    @cached_property
    def labelled_labels(self) -> torch.Tensor | None:
        return _cat([b.labels for b in self.labelled_target]) if self.labelled_target else None

    def all_images(self) -> torch.Tensor:
        """Source images, then unlabelled target images where the protocol grants them."""
        if self.target_images is None:
            return self.source_images
        return torch.cat([self.source_images, self.target_images])


class Method(nn.Module):
    """Base class: subclasses set the class variables and implement `losses`."""

    family: ClassVar[str]
    paper: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # the distribution of each parameter worth searching, with the reason for its range
    # (`benchmark.suite.search`); a suite's `search:` draws from it, never from the defaults
    search: ClassVar[dict[str, Distribution]] = {}
    needs: ClassVar[Needs] = Needs()
    trains_student: ClassVar[bool] = True
    # A method that turns the teacher itself into the evaluated network (feature transfer)
    # gets the teacher's backbone as its student, whatever the suite's students are.
    student_is_teacher_architecture: ClassVar[bool] = False
    # A method that adapts the trained student at test time (Meta-DMoE): the harness calls
    # `adapt` once per scored domain with unlabelled images of it, and scores what it returns.
    adapts_at_test: ClassVar[bool] = False

    def __init__(self, name: str, label_smoothing: float = 0.0, **params: Any) -> None:
        super().__init__()
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(self.defaults) or "none"
            raise XdkdError(
                f"method '{name}' has no parameter '{unknown[0]}'; its parameters: {valid}"
            )
        self.name = name
        self.params = {**self.defaults, **params}
        self.label_smoothing = label_smoothing  # the recipe's, for every labelled CE

    def cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on labelled images, with the recipe's label smoothing. `labels`:
        class indices, or class probabilities (rows summing to 1) where the recipe mixes
        source images (mixup, cutmix): `F.cross_entropy` takes either."""
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        """Build the method's own trainable parts from a probe batch (none by default)."""

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def adapt(
        self, student: nn.Module, teacher: Teachers | None, support: torch.Tensor
    ) -> nn.Module:
        """Test-time adaptation: an adapted copy of the trained `student` (left unchanged)
        for the domain `support` (unlabelled images of it, normalised as in training) was
        drawn from, in eval mode."""
        raise NotImplementedError

    def adaptation_budget(self) -> dict[str, Any]:
        """What one adaptation may use, for the record: `support_images` (how many unlabelled
        images of a domain `adapt` is given: the harness reads it), steps, learning rate."""
        raise NotImplementedError


@dataclass
class DistillationStep:
    """What most distillation losses start from: the student's logits on every image of the
    batch, the teachers' (ensemble) logits on the same images, cross-entropy on the labelled
    source rows and, when asked, the student's and the teacher's stage and pooled features."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    source_ce: torch.Tensor
    source_count: int
    student_outputs: ModelOutputs | None = None
    teacher_outputs: ModelOutputs | None = None


def distillation_step(
    method: Method,
    student: nn.Module,
    teacher: Teachers,
    batch: Batch,
    student_features: bool = False,
    teacher_features: bool = False,
) -> DistillationStep:
    """A training forward of the student and a gradient-free one of the teacher(s), computed
    once for all of a method's terms; stage and pooled features of either where asked (the
    teacher's only where the protocol grants them)."""
    images = batch.all_images()
    student_outputs = forward_outputs(student, images) if student_features else None
    student_logits = student_outputs.logits if student_features else student(images)
    teacher_outputs = teacher.outputs(images) if teacher_features else None
    teacher_logits = teacher_outputs.logits if teacher_features else teacher(images)
    source_count = len(batch.source_labels)
    source_ce = method.cross_entropy(student_logits[:source_count], batch.source_labels)
    return DistillationStep(
        student_logits, teacher_logits, source_ce, source_count, student_outputs, teacher_outputs
    )


def class_indices(labels: torch.Tensor) -> torch.Tensor:
    """One class per image: the labels themselves, or for mixed labels (Mixup, CutMix: class
    probabilities) the class with the largest share, for a method that needs one class per
    image (DKD's target-class mask)."""
    return labels.argmax(1) if labels.dim() == 2 else labels


def join_labels(parts: list[torch.Tensor], classes: int) -> torch.Tensor:
    """Labels of several batches as one: joined as they are when all are class indices (the
    cross-entropy of unmixed runs is unchanged), as class probabilities when one is mixed."""
    if all(part.dim() == 1 for part in parts):
        return torch.cat(parts)
    dtype = next(part.dtype for part in parts if part.dim() == 2)
    return torch.cat([p if p.dim() == 2 else F.one_hot(p, classes).to(dtype) for p in parts])
