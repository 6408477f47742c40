"""The training loop: sums a method's named loss terms; knows nothing of any method."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.config import Recipe
from benchmark.data.tensors import DeviceSplit, batches
from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, Method


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


def fit(
    student: nn.Module,
    teacher: nn.Module | None,
    method: Method,
    data: TrainData,
    recipe: Recipe,
    generator: torch.Generator,
    label: str,
) -> dict[str, float]:
    """Train `student` with `method` for `recipe.epochs`; returns the last step's loss terms."""
    total_steps = recipe.epochs * steps_per_epoch(data, recipe.batch_size)
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
    bar = tqdm(range(total_steps), desc=label, leave=False, unit="step", mininterval=1.0)
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
    student.eval()
    return terms


def freeze(model: nn.Module) -> nn.Module:
    """A teacher is never updated: eval mode (BatchNorm statistics fixed), no gradients."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
