"""Teacher-student fidelity and per-class accuracy (Stanton et al. NeurIPS 2021 separate
fidelity from accuracy): the formulas on fixed logits, and what every record of the tiny
sweep carries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from benchmark.run.evaluate import fidelity, per_class_accuracy
from benchmark.store import RunStore


def test_fidelity_is_top1_agreement_and_kl_from_teacher_to_student():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.3, 0.2, 0.1]])
    teacher = torch.tensor([[1.0, 0.5, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    measured = fidelity(student, teacher)
    p = np.exp(teacher.numpy()) / np.exp(teacher.numpy()).sum(1, keepdims=True)
    q = np.exp(student.numpy()) / np.exp(student.numpy()).sum(1, keepdims=True)
    expected_kl = float(np.mean([sum(p[i] * np.log(p[i] / q[i])) for i in range(3)]))
    assert math.isclose(measured["agreement"], 1 / 3, rel_tol=1e-6)  # the first row agrees
    assert math.isclose(measured["kl"], expected_kl, rel_tol=1e-5)
    same = fidelity(teacher, teacher)
    assert same["agreement"] == 1.0 and abs(same["kl"]) < 1e-6


def test_per_class_accuracy_names_each_class_with_test_images():
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0]])
    labels = torch.tensor([0, 1, 1, 0])
    accuracy = per_class_accuracy(logits, labels, ["zero", "one", "two"])
    assert accuracy == {"zero": 1.0, "one": 0.5}  # "two" has no test image


def test_every_student_record_has_fidelity_and_per_class_accuracy(tiny_sweep: Path):
    records = RunStore(tiny_sweep / "runs").records()
    students = [r for r in records if r.spec.method.name != "teacher"]
    assert students
    for record in students:
        metrics = record.metrics
        assert 0.0 <= metrics["teacher_agreement"] <= 1.0 and metrics["teacher_kl"] >= 0.0
        (per_class,) = record.per_class.values()
        assert len(per_class) == 10  # mnist's digits
        assert min(per_class.values()) <= metrics["target_acc"] <= max(per_class.values())
        chosen = record.selected.get("source-val")
        assert chosen is None or "teacher_agreement" in chosen
    (teacher,) = [r for r in records if r.spec.method.name == "teacher"]
    assert "teacher_agreement" not in teacher.metrics and teacher.per_class
