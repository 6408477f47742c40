"""Evaluation primitives for a trained network: logits of a split, accuracy, calibration.

BatchNorm runs in eval mode at test time (WILDS' rule).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.data.provider import Split
from benchmark.data.tensors import ordered_batches
from benchmark.run.calibration import expected_calibration_error, negative_log_likelihood


@torch.inference_mode()
def predict(
    model: nn.Module, split: Split, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of a whole split, in order, in eval mode."""
    was_training = model.training
    model.eval()
    logits = [model(images).float() for images, _ in ordered_batches(split, batch_size)]
    model.train(was_training)
    return torch.cat(logits), split.labels


def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    logits, labels = predict(model, split, batch_size)
    return float((logits.argmax(1) == labels).float().mean())


def clean_metrics(model: nn.Module, split: Split, batch_size: int = 512) -> dict[str, float]:
    """Top-1 accuracy, ECE (15 bins) and NLL."""
    return scores(*predict(model, split, batch_size))


def scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy, ECE (15 bins) and NLL of logits already computed."""
    return {
        "acc": float((logits.argmax(1) == labels).float().mean()),
        "ece": expected_calibration_error(logits.softmax(1), labels),
        "nll": negative_log_likelihood(logits, labels),
    }


def fidelity(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, float]:
    """How closely the student matches its teacher on the same images, apart from accuracy
    (Stanton et al. NeurIPS 2021, "Does knowledge distillation really work?"): top-1
    agreement, and KL(teacher || student) of their softmax outputs, mean over images."""
    log_teacher = teacher_logits.float().log_softmax(1)
    log_student = student_logits.float().log_softmax(1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean()
    agreement = (student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean()
    return {"agreement": float(agreement), "kl": float(kl)}


def per_class_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[str]
) -> dict[str, float]:
    """Top-1 accuracy of each class that has test images, by class name."""
    hits = logits.argmax(1) == labels
    return {
        name: float(hits[labels == index].float().mean())
        for index, name in enumerate(classes)
        if bool((labels == index).any())
    }


@torch.inference_mode()
def corruption_accuracy(
    model: nn.Module, corrupted: dict[tuple[str, int], Split], batch_size: int = 512
) -> dict[tuple[str, int], float]:
    """Accuracy on every (corruption, severity) cell, the cells read as one stream: batches
    are filled across cells (at least `batch_size` images each), so a small cell costs no
    partial batch of its own."""
    was_training = model.training
    model.eval()
    correct = dict.fromkeys(corrupted, 0)
    pending: list[tuple[tuple[str, int], torch.Tensor, torch.Tensor]] = []

    def score() -> None:
        batch = torch.cat([images for _, images, _ in pending])
        hits = model(batch).argmax(1) == torch.cat([labels for _, _, labels in pending])
        sizes = [len(labels) for _, _, labels in pending]
        for (cell, _, _), cell_hits in zip(pending, hits.split(sizes), strict=True):
            correct[cell] += int(cell_hits.sum())
        pending.clear()

    filled = 0
    for cell, split in corrupted.items():
        for images, labels in ordered_batches(split, batch_size):
            pending.append((cell, images, labels))
            filled += len(labels)
            if filled >= batch_size:
                score()
                filled = 0
    if pending:
        score()
    model.train(was_training)
    return {cell: correct[cell] / max(len(split), 1) for cell, split in corrupted.items()}
