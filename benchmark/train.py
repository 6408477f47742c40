"""One run's training: the teacher on its source, the student with a method.

The loop sums a method's named loss terms and knows nothing of any method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.config import Recipe, RunSpec, TeacherSpec
from benchmark.data.domains import domain_info
from benchmark.data.provider import SplitProvider
from benchmark.data.tensors import DeviceSplit, batches
from benchmark.errors import XdkdError
from benchmark.evaluate import accuracy
from benchmark.methods.base import Batch, Method
from benchmark.methods.source_only import SourceOnly
from benchmark.models import create_backbone
from benchmark.seeding import derive_seed, generator


class DivergedError(XdkdError):
    """A loss term became NaN or infinite."""


@dataclass
class TrainData:
    source: DeviceSplit
    target: DeviceSplit | None  # None under zero_shot
    target_labelled: bool


def make_optimizer(
    params: list[nn.Parameter], recipe: Recipe, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=0.25
        )
    elif recipe.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


def steps_per_epoch(data: TrainData, batch_size: int) -> int:
    return max(1, len(data.source) // min(batch_size, len(data.source)))


@dataclass
class FitResult:
    """The last step's loss terms and, when a validation split was given, the state of the
    epoch with the best source-validation accuracy (the training-domain validation rule)."""

    terms: dict[str, float]
    validation_accuracy: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = None


def fit(
    student: nn.Module,
    teacher: nn.Module | None,
    method: Method,
    data: TrainData,
    recipe: Recipe,
    generator: torch.Generator,
    label: str,
    validation: DeviceSplit | None = None,
    progress: bool = True,
) -> FitResult:
    """Train `student` with `method` for `recipe.epochs`, validating after every epoch."""
    epoch_steps = steps_per_epoch(data, recipe.batch_size)
    total_steps = recipe.epochs * epoch_steps
    source = batches(data.source, recipe.batch_size, generator, recipe.augment)
    target = (
        batches(data.target, recipe.batch_size, generator, recipe.augment) if data.target else None
    )

    def next_batch(step: int) -> Batch:
        source_images, source_labels = next(source)
        target_images, target_labels = next(target) if target else (None, None)
        return Batch(
            source_images,
            source_labels,
            target_images,
            target_labels if data.target_labelled else None,
            progress=step / total_steps,
        )

    student.train()
    method.setup(student, teacher, next_batch(0))
    method.train()
    params = [p for p in [*student.parameters(), *method.parameters()] if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, recipe, total_steps)
    terms: dict[str, float] = {}
    result = FitResult(terms)
    bar = tqdm(
        range(total_steps),
        desc=label,
        leave=False,
        unit="step",
        mininterval=1.0,
        disable=not progress,
    )
    for step in bar:
        losses = method.losses(student, teacher, next_batch(step))
        total = sum(losses.values())
        terms = {name: float(value.detach()) for name, value in losses.items()}
        bad = [name for name, value in terms.items() if not math.isfinite(value)]
        if bad:
            raise DivergedError(
                f"{label}: loss '{bad[0]}' became {terms[bad[0]]} at step {step} of "
                f"{total_steps}; lower the learning rate (recipe lr={recipe.lr})"
            )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        if step % 20 == 0:
            bar.set_postfix({name: f"{value:.3f}" for name, value in terms.items()})
        if validation is not None and (step + 1) % epoch_steps == 0:
            score = accuracy(student, validation)
            if not result.validation_accuracy or score > max(result.validation_accuracy):
                result.best_epoch = len(result.validation_accuracy)
                result.best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
            result.validation_accuracy.append(score)
    student.eval()
    result.terms = terms
    return result


def freeze(model: nn.Module) -> nn.Module:
    """A teacher is never updated: eval mode (BatchNorm statistics fixed), no gradients."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def train_teacher(
    spec: TeacherSpec, splits: SplitProvider, device: torch.device, progress: bool = True
) -> tuple[nn.Module, FitResult]:
    """A fresh teacher trained on its source's train split (last epoch kept)."""
    torch.manual_seed(derive_seed(spec.seed, "teacher-init", spec.backbone.name))
    model = create_backbone(spec.backbone, domain_info(spec.source).num_classes).to(device)
    source = splits.split(spec.source, "train", spec.image_size, spec.source_validation)
    result = fit(
        model,
        None,
        SourceOnly("source_only"),
        TrainData(source, None, False),
        spec.recipe,
        generator(spec.seed, device, "teacher", spec.source, spec.backbone.name),
        label=f"teacher {spec.backbone.name} on {spec.source}",
        progress=progress,
    )
    return model, result


def train_student(
    spec: RunSpec,
    teacher: nn.Module | None,
    method: Method,
    splits: SplitProvider,
    device: torch.device,
    progress: bool = True,
) -> tuple[nn.Module, FitResult]:
    """A fresh student trained with `method`; target images and labels as the protocol
    grants them; validated on the held-out source validation split after every epoch."""
    size, holdout = spec.image_size, spec.source_validation
    torch.manual_seed(derive_seed(spec.seed, "student-init", spec.student.name))
    student = create_backbone(spec.student, domain_info(spec.pair.target).num_classes)
    student = student.to(device)
    target = None
    if spec.protocol != "zero_shot":
        target = splits.split(spec.pair.target, "train", size)
    data = TrainData(
        splits.split(spec.pair.source, "train", size, holdout),
        target,
        target_labelled=spec.protocol == "labelled_target" or method.needs_target_labels,
    )
    validation = splits.split(spec.pair.source, "val", size, holdout) if holdout else None
    torch.manual_seed(derive_seed(spec.seed, "student-train", spec.key))
    result = fit(
        student,
        teacher,
        method,
        data,
        spec.student_recipe,
        generator(spec.seed, device, "student", spec.key),
        label=f"{spec.method.name} {spec.student.name} {spec.pair.label}",
        validation=validation,
        progress=progress,
    )
    return student, result
