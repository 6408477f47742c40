"""Every registered method trains every kind of student from frozen teachers for a few steps, under
every protocol it fits.

Parametrised over `METHODS.names()`, so a new method is covered without new test code: over
students of three families (a digit CNN, a timm CNN, a ViT) distilled from a `resnet18` teacher,
plus one `dtn` teacher (fewer, larger stages than its `resnet10t` student: resnet18's stage
widths and reductions, a third of its weights, so its AdamW steps cost half), under `uda`; and,
with LeNets, under every protocol the method fits (`benchmark.suite.protocols.unmet`): several
sources with a teacher each, several targets, tasks whose teachers know half the classes each,
few shots, no target at all, and teachers that answer logits or probabilities only. Each case
mirrors `train.fit`: `setup` on a probe batch, one optimizer over student and method parameters,
two steps (the second after an update: what a method carries from step to step, an EMA copy, a
memory bank, the other player's turn, is used); every loss term must be finite, the student must
get gradients, and the teachers must stay in eval mode, gradient-free and unchanged. ViT cases
have "vit" in their ids (`-k "not vit"` leaves them out); they use `vit_tiny_patch16_224` cut to
6 blocks (of 12) and 8-pixel patches (a 4x4 token grid) to stay fast, still with more stages
than its teacher, as the full one has."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn

from benchmark.methods import METHODS, Batch, Method
from benchmark.methods.base import DomainBatch, Synthetic
from benchmark.methods.teachers import Member, Teachers, freeze
from benchmark.models import create_backbone
from benchmark.run.train import make_optimizer
from benchmark.suite.config import BackboneSpec, Recipe
from benchmark.suite.protocols import PROTOCOLS, Grants, grants, unmet
from benchmark.suite.search import draw

NUM_CLASSES = 10
IMAGE_SIZE = 32
BATCH_SIZE = 8
STEPS = 2
VIT_KWARGS = {"img_size": IMAGE_SIZE, "patch_size": 8, "depth": 6}
BACKBONES = {
    "lenet": BackboneSpec(name="lenet"),
    "dtn": BackboneSpec(name="dtn"),
    "resnet18": BackboneSpec(name="resnet18"),
    "resnet10t": BackboneSpec(name="resnet10t"),
    "vit": BackboneSpec(name="vit_tiny_patch16_224", kwargs=VIT_KWARGS),
}
# (student, teacher)
PAIRS = [("lenet", "resnet18"), ("vit", "resnet18"), ("resnet10t", "dtn")]
CASES = [
    pytest.param(method, student, teacher, id=f"{method}-{student}-from-{teacher}")
    for method in METHODS.names()
    for student, teacher in PAIRS
]
# (protocol, params, sources, targets, tasks): a setting of each shape
SETTINGS = {
    "uda": ("uda", {}, 1, 1, 0),
    "uda-logits": ("uda", {"teacher_access": "logits"}, 1, 1, 0),
    "uda-probabilities": ("uda", {"teacher_access": "probabilities"}, 1, 1, 0),
    "few_shot": ("few_shot", {"shots": 1}, 1, 1, 0),
    "labelled_target": ("labelled_target", {}, 1, 1, 0),
    "zero_shot": ("zero_shot", {}, 1, 1, 0),
    "in_domain": ("in_domain", {}, 1, 1, 0),
    "multi_source": ("multi_source", {}, 2, 1, 0),
    "multi_source-union": ("multi_source", {"teachers": "union"}, 2, 1, 0),
    "multi_target": ("multi_target", {}, 1, 2, 0),
    "multi_task": ("multi_task", {}, 2, 1, 2),
    "data_free": ("data_free", {}, 1, 1, 0),
}
assert {s[0] for s in SETTINGS.values()} == set(PROTOCOLS)


def setting_grants(name: str) -> Grants:
    protocol, params, sources, targets, tasks = SETTINGS[name]
    return grants(protocol, {"teacher_access": "features", **params}, sources, targets, tasks)


PROTOCOL_CASES = [
    pytest.param(method, setting, id=f"{method}-under-{setting}")
    for method in METHODS.names()
    for setting in SETTINGS
    if METHODS.get(method).trains_student
    and unmet(METHODS.get(method).needs, setting_grants(setting)) is None
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one core


def images(generator: torch.Generator) -> torch.Tensor:
    return torch.randn((BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator)


def labels(generator: torch.Generator) -> torch.Tensor:
    return torch.randint(NUM_CLASSES, (BATCH_SIZE,), generator=generator)


def mixed(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Class probabilities as a Mixup or CutMix recipe gives them: each row mixes its label
    with another image's, rows summing to 1."""
    one_hot = nn.functional.one_hot(labels, NUM_CLASSES).float()
    share = torch.rand((len(labels), 1), generator=generator)
    return share * one_hot + (1 - share) * one_hot[torch.randperm(len(labels), generator=generator)]


def make_batch(granted: Grants, oracle: bool, step: int, seed: int, mix: bool = False) -> Batch:
    """One minibatch per domain, as the loop draws them under the setting; `mix`: source
    labels as a mixing recipe gives them (mixup, cutmix)."""
    generator = torch.Generator().manual_seed(seed * 100 + step)
    if not granted.real_images:  # data_free: the method makes its images
        synthetic = Synthetic(BATCH_SIZE, (3, IMAGE_SIZE, IMAGE_SIZE), generator)
        return Batch([], progress=step / STEPS, synthetic=synthetic)
    sources = []
    for i in range(granted.sources):
        source_images, source_labels = images(generator), labels(generator)
        if mix:
            source_labels = mixed(source_labels, generator)
        sources.append(DomainBatch(f"s{i}", source_images, source_labels))
    targets, labelled = [], []
    if granted.target_images:
        targets = [DomainBatch(f"t{i}", images(generator)) for i in range(granted.targets)]
        if granted.target_labels != "none" or oracle:
            labelled = [DomainBatch(b.name, b.images, labels(generator)) for b in targets]
    return Batch(sources, targets, labelled, progress=step / STEPS)


@functools.cache
def initialised(backbone: str, classes: int) -> nn.Module:
    """A network made once per backbone and head size: timm initialises a resnet18 in 0.1 s,
    a quarter of a case's time."""
    torch.manual_seed(0)
    return create_backbone(BACKBONES[backbone], classes)


def fresh_network(backbone: str, classes: int) -> nn.Module:
    """A fresh copy of the initialised network: no case sees another's changes."""
    return copy.deepcopy(initialised(backbone, classes))


def make_teachers(granted: Grants, backbone: str) -> Teachers:
    """The setting's teachers: one per source (or task, each knowing half the classes)."""
    members = []
    for index in range(granted.teachers):
        if granted.teacher_layout == "per_task":
            half = NUM_CLASSES // 2
            columns = list(range(index * half, (index + 1) * half))
            model = fresh_network(backbone, half)
        else:
            columns, model = None, fresh_network(backbone, NUM_CLASSES)
        members.append(Member(f"teacher{index}", freeze(model), columns))
    return Teachers(members, NUM_CLASSES, granted.access)


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


def train_a_few_steps(
    method_name: str,
    student: str,
    teacher: str,
    granted: Grants,
    mix: bool = False,
    params: dict | None = None,
) -> None:
    method_class = METHODS.get(method_name)
    torch.manual_seed(0)
    teachers = make_teachers(granted, teacher)
    modules = [teachers.module(n) for n in teachers.names] if granted.access == "features" else []
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]
    network = fresh_network(student, NUM_CLASSES).train()
    view = teachers if method_class.needs.teacher else None
    oracle = method_class.needs.oracle
    method = method_class(method_name, **(params or {}))
    method.setup(network, view, make_batch(granted, oracle, step=0, seed=1))
    method.train()
    params = [p for p in [*network.parameters(), *method.parameters()] if p.requires_grad]
    optimizer, _ = make_optimizer(params, Recipe(schedule="constant"), total_steps=STEPS)
    student_learnt = False  # in some step: a method may alternate players (zskt)
    for step in range(STEPS):
        losses = method.losses(network, view, make_batch(granted, oracle, step, 2, mix))
        assert losses, f"{method_name} returned no loss terms"
        for name, value in losses.items():
            assert value.dim() == 0, f"loss '{name}' is not a scalar"
            assert math.isfinite(float(value.detach())), f"step {step}: loss '{name}' = {value}"
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert any(g.abs().sum() > 0 for g in grads), f"step {step}: no gradient at all"
        assert all(torch.isfinite(g).all() for g in grads), f"step {step}: bad gradient"
        student_learnt |= any(
            p.grad is not None and bool(p.grad.abs().sum() > 0) for p in network.parameters()
        )
        optimizer.step()
        for module, state in zip(modules, before, strict=True):
            assert_teacher_untouched(module, state)
    assert student_learnt, f"the student got no gradient in {STEPS} steps"


@pytest.mark.parametrize(("method_name", "student_name", "teacher_name"), CASES)
def test_method_trains_the_student_and_leaves_the_teacher_alone(
    method_name: str, student_name: str, teacher_name: str
) -> None:
    reason = skip_reason(METHODS.get(method_name), student_name, teacher_name)
    if reason:
        pytest.skip(f"{method_name}: {reason}")
    train_a_few_steps(method_name, student_name, teacher_name, fitting_setting(method_name))


def fitting_setting(method_name: str) -> Grants:
    """The first setting of `SETTINGS` the method fits (`uda` for most)."""
    needs = METHODS.get(method_name).needs
    fitting = [name for name in SETTINGS if unmet(needs, setting_grants(name)) is None]
    return setting_grants(fitting[0])


@pytest.mark.parametrize(
    "method_name", [m for m in METHODS.names() if METHODS.get(m).trains_student]
)
def test_method_trains_on_mixed_source_labels(method_name: str) -> None:
    """Under a mixup or cutmix recipe source labels are class probabilities, not indices."""
    reason = skip_reason(METHODS.get(method_name), "lenet", "lenet")
    if reason:
        pytest.skip(f"{method_name}: {reason}")
    train_a_few_steps(method_name, "lenet", "lenet", fitting_setting(method_name), mix=True)


@pytest.mark.parametrize("method_name", [m for m in METHODS.names() if METHODS.get(m).search])
def test_method_trains_with_a_draw_of_its_search_space(method_name: str) -> None:
    """A search's first draw of every searched parameter trains like the defaults do."""
    method_class = METHODS.get(method_name)
    reason = skip_reason(method_class, "lenet", "lenet")
    if reason:
        pytest.skip(f"{method_name}: {reason}")
    params = draw(method_class.search, 0, method_name, "generic", 1)
    train_a_few_steps(method_name, "lenet", "lenet", fitting_setting(method_name), params=params)


@pytest.mark.parametrize(("method_name", "setting"), PROTOCOL_CASES)
def test_method_trains_under_every_protocol_it_fits(method_name: str, setting: str) -> None:
    train_a_few_steps(method_name, "lenet", "lenet", setting_grants(setting))


def test_every_protocol_has_methods_that_fit_it() -> None:
    fitting = {setting for _, setting in (case.values for case in PROTOCOL_CASES)}
    assert fitting == set(SETTINGS)
