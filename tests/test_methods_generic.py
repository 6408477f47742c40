"""Every registered method trains every kind of student from a frozen teacher for a few steps.

Parametrised over `METHODS.names()`, so a new method is covered without new test code, and
over students of three families (a digit CNN, a timm CNN, a ViT) distilled from a `resnet18`
teacher, plus one `dtn` teacher (fewer, larger stages than its `resnet18` student). Each case
mirrors `train.fit`: `setup` on a probe batch, one optimizer over student and method
parameters, three steps; every loss term must be finite, the student must get gradients, and
the teacher must stay in eval mode, gradient-free and unchanged. ViT cases have "vit" in
their ids (`-k "not vit"` leaves them out); they use `vit_tiny_patch16_224` cut to 6 blocks
(of 12) to stay fast, still with more stages than its teacher, as the full one has.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from benchmark.config import BackboneSpec, Recipe
from benchmark.methods import METHODS, Batch, Method
from benchmark.models import create_backbone
from benchmark.train import freeze, make_optimizer

NUM_CLASSES = 10
IMAGE_SIZE = 32
BATCH_SIZE = 8
STEPS = 3
VIT_KWARGS = {"img_size": IMAGE_SIZE, "patch_size": 4, "depth": 6}
BACKBONES = {
    "lenet": BackboneSpec(name="lenet"),
    "dtn": BackboneSpec(name="dtn"),
    "resnet18": BackboneSpec(name="resnet18"),
    "vit": BackboneSpec(name="vit_tiny_patch16_224", kwargs=VIT_KWARGS),
}
# (student, teacher)
PAIRS = [("lenet", "resnet18"), ("resnet18", "resnet18"), ("vit", "resnet18"), ("resnet18", "dtn")]
CASES = [
    pytest.param(method, student, teacher, id=f"{method}-{student}-from-{teacher}")
    for method in METHODS.names()
    for student, teacher in PAIRS
]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The machine is shared: one core is enough for these tiny networks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def protocol_for(method_class: type[Method]) -> str:
    """The strictest protocol the method accepts: unlabelled target images when it can."""
    return "uda" if "uda" in method_class.protocols else method_class.protocols[0]


def make_batch(protocol: str, target_labelled: bool, step: int, seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed * 100 + step)
    shape = (BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE)
    has_target = protocol != "zero_shot"
    return Batch(
        source_images=torch.randn(shape, generator=generator),
        source_labels=torch.randint(NUM_CLASSES, (BATCH_SIZE,), generator=generator),
        target_images=torch.randn(shape, generator=generator) if has_target else None,
        target_labels=(
            torch.randint(NUM_CLASSES, (BATCH_SIZE,), generator=generator)
            if has_target and target_labelled
            else None
        ),
        progress=step / STEPS,
    )


def skip_reason(method_class: type[Method], student: str, teacher: str) -> str | None:
    if not method_class.trains_student:
        return "the method trains no student (trains_student = False)"
    if method_class.student_is_teacher_architecture and student != teacher:
        return f"the method needs a student of the teacher's architecture ({teacher})"
    return None


def assert_teacher_untouched(teacher: nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert not any(module.training for module in teacher.modules()), "teacher left eval mode"
    assert all(param.grad is None for param in teacher.parameters()), "teacher got gradients"
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), f"teacher tensor '{name}' changed"


@pytest.mark.parametrize(("method_name", "student_name", "teacher_name"), CASES)
def test_method_trains_the_student_and_leaves_the_teacher_alone(
    method_name: str, student_name: str, teacher_name: str
) -> None:
    method_class = METHODS.get(method_name)
    reason = skip_reason(method_class, student_name, teacher_name)
    if reason:
        pytest.skip(f"{method_name}: {reason}")
    torch.manual_seed(0)
    teacher = None
    if method_class.uses_teacher:
        teacher = freeze(create_backbone(BACKBONES[teacher_name], NUM_CLASSES))
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()} if teacher else {}
    student = create_backbone(BACKBONES[student_name], NUM_CLASSES).train()
    protocol = protocol_for(method_class)
    target_labelled = protocol == "labelled_target" or method_class.needs_target_labels

    method = method_class(method_name)
    method.setup(student, teacher, make_batch(protocol, target_labelled, step=0, seed=1))
    method.train()
    params = [p for p in [*student.parameters(), *method.parameters()] if p.requires_grad]
    optimizer, _ = make_optimizer(params, Recipe(schedule="constant"), total_steps=STEPS)

    for step in range(STEPS):
        losses = method.losses(student, teacher, make_batch(protocol, target_labelled, step, 2))
        assert losses, f"{method_name} returned no loss terms"
        for name, value in losses.items():
            assert value.dim() == 0, f"loss '{name}' is not a scalar"
            assert math.isfinite(float(value.detach())), f"step {step}: loss '{name}' = {value}"
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        student_grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert any(g.abs().sum() > 0 for g in student_grads), f"step {step}: no student gradient"
        assert all(torch.isfinite(g).all() for g in student_grads), f"step {step}: bad gradient"
        optimizer.step()
        if teacher is not None:
            assert_teacher_untouched(teacher, teacher_before)
