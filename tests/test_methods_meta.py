"""Meta-DMoE (`benchmark.methods.meta_dmoe`): its two training stages, the first-order inner
update against a hand computation, the exact meta-gradient of the aggregator against finite
differences, the own-domain expert's mask, test-time adaptation, and the aggregator's
state saved and restored as the harness does it (setup on a probe batch, then
`load_state_dict`).

Experts are a LeNet named "a" and a ResNet-18 named "b", the sources of the batches carry
those names, as the harness names both after the source domains.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from benchmark.errors import XdkdError
from benchmark.methods import METHODS
from benchmark.methods.base import Batch, DomainBatch
from benchmark.methods.meta_dmoe import MetaDMoE, meta_dmoe_inner_loss, split_support_query
from benchmark.methods.teachers import Member, Teachers, freeze
from benchmark.models import create_backbone, forward_outputs
from benchmark.run.train import make_optimizer
from benchmark.suite.config import BackboneSpec, Recipe
from benchmark.suite.protocols import grants, unmet

CLASSES = 10
SIZE = 32
PER_SOURCE = 8  # support 4 (half, under the default support_size 24), query 4
VIT = BackboneSpec(
    name="vit_tiny_patch16_224", kwargs={"img_size": SIZE, "patch_size": 8, "depth": 2}
)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one core


def network(name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    spec = VIT if name == "vit" else BackboneSpec(name=name)
    return create_backbone(spec, CLASSES).to(dtype)


def experts(dtype: torch.dtype = torch.float32, seed: int = 0) -> Teachers:
    torch.manual_seed(seed)
    members = [
        Member("a", freeze(network("lenet", dtype))),
        Member("b", freeze(network("resnet18", dtype))),
    ]
    return Teachers(members, CLASSES)


def batch(
    seed: int, progress: float, names: str = "ab", dtype: torch.dtype = torch.float32
) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    sources = [
        DomainBatch(
            name,
            torch.randn(PER_SOURCE, 3, SIZE, SIZE, generator=generator).to(dtype),
            torch.randint(CLASSES, (PER_SOURCE,), generator=generator),
        )
        for name in names
    ]
    return Batch(sources, progress=progress)


def ready(student: nn.Module, teachers: Teachers, seed: int = 0, **params: float) -> MetaDMoE:
    dtype = next(student.parameters()).dtype
    method = MetaDMoE("meta_dmoe", **params)
    method.setup(student, teachers, batch(seed, 0.0, dtype=dtype))
    return method.to(dtype).train()


def teacher_states(teachers: Teachers) -> list[dict[str, torch.Tensor]]:
    return [
        {k: v.clone() for k, v in teachers.module(n).state_dict().items()} for n in teachers.names
    ]


def test_registered_and_fits_multi_source_only() -> None:
    assert METHODS.get("meta_dmoe") is MetaDMoE
    assert MetaDMoE.family == "meta-learning" and MetaDMoE.adapts_at_test
    several = grants("multi_source", {"teacher_access": "features"}, 2, 1, 0)
    assert unmet(MetaDMoE.needs, several) is None
    assert "several teachers" in unmet(MetaDMoE.needs, grants("uda", {}, 1, 1, 0))
    union = grants("multi_source", {"teachers": "union"}, 2, 1, 0)
    assert unmet(MetaDMoE.needs, union) is not None
    logits = grants("multi_source", {"teacher_access": "logits"}, 2, 1, 0)
    assert "features" in unmet(MetaDMoE.needs, logits)


def test_width_must_split_into_heads() -> None:
    with pytest.raises(XdkdError, match="multiple of aggregator_heads"):
        MetaDMoE("meta_dmoe", aggregator_width=100, aggregator_heads=16)
    MetaDMoE("meta_dmoe", aggregator_width=128, aggregator_heads=16)


def test_support_is_at_most_half_and_a_single_image_is_both() -> None:
    images, labels = torch.arange(10.0).view(10, 1), torch.arange(10)
    support, query, query_labels = split_support_query(images, labels, 24)
    assert support.flatten().tolist() == [0, 1, 2, 3, 4]
    assert query.flatten().tolist() == [5, 6, 7, 8, 9] and query_labels.tolist() == [5, 6, 7, 8, 9]
    support, query, _ = split_support_query(images, labels, 3)
    assert len(support) == 3 and len(query) == 7
    one, same, _ = split_support_query(images[:1], labels[:1], 24)
    assert one is same


def test_aggregator_widths_come_from_the_probe() -> None:
    """Experts of 512 (lenet, resnet18) and 192 (ViT) features, a ViT student: tokens of 512
    (the widest, a multiple of 16), the ViT expert projected, the output projected to 192."""
    torch.manual_seed(0)
    teachers = Teachers(
        [Member("a", freeze(network("vit"))), Member("b", freeze(network("lenet")))], CLASSES
    )
    method = ready(network("vit").train(), teachers)
    aggregator = method.aggregator
    assert isinstance(aggregator.inputs[0], nn.Linear) and aggregator.inputs[0].in_features == 192
    assert isinstance(aggregator.inputs[1], nn.Identity)
    assert (aggregator.output.in_features, aggregator.output.out_features) == (512, 192)
    assert aggregator.blocks[0].attention.num_heads == 16
    same = ready(network("lenet").train(), experts())
    assert isinstance(same.aggregator.output, nn.Identity)  # the paper's case: one width


def test_both_stages_train_student_and_aggregator_and_leave_the_experts_alone() -> None:
    """As `train.fit` runs it: one optimizer over student and method, one backward of the sum.
    Stage 1 trains the student and the aggregator's head; stage 2 (meta) reaches the student
    and the aggregator's transformer but not its head, with the student's BatchNorm
    statistics fixed (eval mode, as the authors' meta-training) and its mode restored."""
    teachers = experts()
    before = teacher_states(teachers)
    torch.manual_seed(1)
    student = network("lenet").train()
    method = ready(student, teachers)
    params = [p for p in [*student.parameters(), *method.parameters()] if p.requires_grad]
    optimizer, _ = make_optimizer(params, Recipe(schedule="constant"), total_steps=4)
    running = lambda: [b.clone() for n, b in student.named_buffers() if "running" in n]  # noqa: E731
    for step, progress in enumerate([0.0, 0.2, 0.5, 0.9]):
        stats = running()
        terms = method.losses(student, teachers, batch(10 + step, progress))
        assert set(terms) == {"ce", "aggregator_ce", "meta"}
        assert all(t.dim() == 0 and math.isfinite(float(t.detach())) for t in terms.values())
        meta_stage = progress >= method.params["pretrain_fraction"]
        value = {name: float(term.detach()) for name, term in terms.items()}
        assert (value["meta"] > 0) == meta_stage
        assert (value["ce"] > 0) == (value["aggregator_ce"] > 0) == (not meta_stage)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        student_grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert any(g.abs().sum() > 0 for g in student_grads)
        attention = method.aggregator.blocks[0].attention.out_proj.weight.grad
        head = method.aggregator.head[1].weight.grad
        if meta_stage:
            assert attention is not None and attention.abs().sum() > 0
            assert head is None or head.abs().sum() == 0
            assert all(torch.equal(a, b) for a, b in zip(stats, running(), strict=True))
        else:
            assert head.abs().sum() > 0
            assert not all(torch.equal(a, b) for a, b in zip(stats, running(), strict=True))
        assert student.training and method.aggregator.training
        optimizer.step()
        for name, state in zip(teachers.names, before, strict=True):
            module = teachers.module(name)
            assert not any(m.training for m in module.modules())
            assert all(p.grad is None for p in module.parameters())
            assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())


def test_a_vit_student_meta_trains_through_attention() -> None:
    """The meta term's backward differentiates the student's support forward twice; a ViT's
    fused attention kernels have no double backward, so the method runs that forward on
    the math kernels (without them this fails)."""
    teachers = experts()
    torch.manual_seed(9)
    student = network("vit").train()
    method = ready(student, teachers, pretrain_fraction=0.0)
    terms = method.losses(student, teachers, batch(80, 0.5))
    sum(terms.values()).backward()
    assert math.isfinite(float(terms["meta"].detach()))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert method.aggregator.output.weight.grad.abs().sum() > 0


def hand_meta_gradient(
    student: nn.Module, method: MetaDMoE, teachers: Teachers, step: Batch, inner_lr: float
) -> dict[str, torch.Tensor]:
    """The first-order meta-gradient written out: per source, g = autograd of the inner MSE
    at theta, theta' = theta - lr g (detached: a new leaf), the query CE of the student at
    theta' (its plain forward), its gradient w.r.t. theta'; the mean over the sources."""
    student.eval()
    method.aggregator.eval()
    params = dict(student.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for source in step.sources:
        support, query, labels = source.images[:4], source.images[4:], source.labels[4:]
        other = [k for k, n in enumerate(method.expert_names) if n != source.name]
        with torch.no_grad():
            target = method.aggregator(
                {k: teachers.outputs(support, method.expert_names[k]).pooled for k in other}
            )
        pooled = forward_outputs(student, support).pooled
        inner = ((pooled - target) ** 2).mean()
        grads = torch.autograd.grad(inner, list(params.values()), allow_unused=True)
        adapted = {
            n: (p if g is None else p - inner_lr * g).detach().requires_grad_()
            for (n, p), g in zip(params.items(), grads, strict=True)
        }
        ce = F.cross_entropy(functional_call(student, adapted, (query,)), labels)
        for (n, _), g in zip(
            adapted.items(), torch.autograd.grad(ce, list(adapted.values())), strict=True
        ):
            total[n] += g / len(step.sources)
    return total


def test_student_gets_the_first_order_gradient_at_the_adapted_parameters() -> None:
    inner_lr = 0.5  # large, so theta' is far from theta and the check can tell them apart
    teachers = experts()
    torch.manual_seed(2)
    student = network("lenet").train()
    method = ready(student, teachers, inner_lr=inner_lr, pretrain_fraction=0.0)
    step = batch(20, 0.5)
    method.losses(student, teachers, step)["meta"].backward()
    got = {n: p.grad.clone() for n, p in student.named_parameters()}
    student.zero_grad(set_to_none=True)
    expected = hand_meta_gradient(student, method, teachers, step, inner_lr)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-6, msg=name)
    # the gradient at theta itself (no inner step) is a different vector
    at_theta = hand_meta_gradient(student, method, teachers, step, 0.0)
    gap = sum(float((at_theta[n] - expected[n]).abs().sum()) for n in expected)
    assert gap > 1e-3 * sum(float(v.abs().sum()) for v in expected.values())


def test_aggregator_gets_the_exact_meta_gradient() -> None:
    """In float64: the aggregator's gradient from the meta term equals central finite
    differences of that term in a few of its parameters (theta fixed)."""
    teachers = experts(torch.float64)
    torch.manual_seed(3)
    student = network("lenet", torch.float64).train()
    method = ready(student, teachers, inner_lr=0.5, pretrain_fraction=0.0)
    step = batch(30, 0.5, dtype=torch.float64)
    method.zero_grad(set_to_none=True)
    method.losses(student, teachers, step)["meta"].backward()
    probes = [
        ("blocks.0.mlp.3.bias", 0),
        ("blocks.0.mlp.0.weight", 7),
        ("blocks.0.attention.in_proj_weight", 512 * 512 * 2 + 3),  # a value-projection entry
        ("blocks.0.mlp_norm.weight", 5),
    ]
    parameters = dict(method.aggregator.named_parameters())
    eps = 1e-6
    for name, index in probes:
        flat = parameters[name].data.view(-1)
        analytic = float(parameters[name].grad.view(-1)[index])
        original = float(flat[index])
        values = []
        for shift in (eps, -eps):
            flat[index] = original + shift
            values.append(float(method.losses(student, teachers, step)["meta"].detach()))
        flat[index] = original
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(analytic) > 0, name
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-10), name


def test_a_source_never_hears_its_own_expert() -> None:
    """Source "a"'s meta term is the same whatever expert "a" is; source "b"'s is not (it
    hears expert "a"), and so is a source of no expert's name (it hears both)."""
    first, second = experts(seed=0), experts(seed=5)
    shared_b = Teachers([Member("a", second.module("a")), Member("b", first.module("b"))], CLASSES)
    torch.manual_seed(4)
    student = network("lenet").train()
    method = ready(student, first, pretrain_fraction=0.0)
    assert method.kept_experts("a") == [1] and method.kept_experts("b") == [0]
    assert method.kept_experts("c") == [0, 1]

    def meta(teachers: Teachers, names: str) -> float:
        return float(method.losses(student, teachers, batch(40, 0.5, names))["meta"].detach())

    assert meta(first, "a") == meta(shared_b, "a")
    assert meta(first, "b") != meta(shared_b, "b")
    assert meta(first, "c") != meta(shared_b, "c")


def test_masking_keeps_a_lone_expert() -> None:
    torch.manual_seed(0)
    lone = Teachers([Member("a", freeze(network("lenet")))], CLASSES)
    method = ready(network("lenet").train(), lone)
    assert method.kept_experts("a") == [0]
    terms = method.losses(network("lenet").train(), lone, batch(0, 0.5, "a"))
    assert math.isfinite(float(terms["meta"].detach()))


def support_images(seed: int = 50, count: int = 30) -> torch.Tensor:
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_adapt_copies_moves_towards_the_aggregate_and_is_deterministic() -> None:
    teachers = experts()
    torch.manual_seed(6)
    student = network("lenet").train()
    method = ready(student, teachers, inner_lr=0.05)
    student.eval()
    method.eval()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    support = support_images()
    adapted = method.adapt(student, teachers, support)
    again = method.adapt(student, teachers, support)
    assert adapted is not student and not adapted.training
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    assert all(p.grad is None for p in student.parameters())
    probe = support_images(seed=51, count=6)
    with torch.no_grad():
        original, moved, repeated = student(probe), adapted(probe), again(probe)
    assert not torch.allclose(original, moved, atol=1e-6)
    assert torch.equal(moved, repeated)
    # one step down the inner loss on the support images it used (the first 24)
    used = support[:24]
    with torch.no_grad():
        target = method.aggregator(
            {k: teachers.outputs(used, n).pooled for k, n in enumerate(teachers.names)}
        )
        loss = lambda m: float(meta_dmoe_inner_loss(forward_outputs(m, used).pooled, target))  # noqa: E731
        assert loss(adapted) < loss(student)
    # callable from evaluation code that runs without gradients
    with torch.no_grad():
        quiet = method.adapt(student, teachers, support)
    assert torch.equal(quiet(probe), moved)
    assert method.adaptation_budget() == {
        "support_images": 24,
        "steps": 1,
        "lr": 0.05,
        "uses": "unlabelled images of the scored domain",
    }


def test_more_adaptation_steps_move_further() -> None:
    teachers = experts()
    torch.manual_seed(7)
    student = network("lenet").eval()
    support = support_images()
    one = ready(student, teachers, inner_lr=0.05).eval()
    three = MetaDMoE("meta_dmoe", inner_lr=0.05, adaptation_steps=3)
    three.setup(student, teachers, batch(0, 0.0))
    three.load_state_dict(one.state_dict())
    three.eval()
    none = MetaDMoE("meta_dmoe", adaptation_steps=0)
    none.setup(student, teachers, batch(0, 0.0))
    probe = support_images(seed=52, count=4)
    with torch.no_grad():
        base = student(probe)
        assert torch.equal(none.adapt(student, teachers, support)(probe), base)
        near = (one.adapt(student, teachers, support)(probe) - base).abs().sum()
        far = (three.adapt(student, teachers, support)(probe) - base).abs().sum()
    assert far > near > 0


def test_state_dict_round_trip_restores_the_trained_aggregator() -> None:
    """As the harness does: train, save the method's state (through torch.save), build a
    fresh method, `setup` it on another probe batch, load the state: the same aggregator,
    and the same adapted student."""
    teachers = experts()
    torch.manual_seed(8)
    student = network("lenet").train()
    trained = ready(student, teachers, pretrain_fraction=0.0)
    optimizer = torch.optim.SGD([*student.parameters(), *trained.parameters()], lr=0.5)
    for step in range(2):
        optimizer.zero_grad()
        sum(trained.losses(student, teachers, batch(60 + step, 0.5)).values()).backward()
        optimizer.step()
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in trained.state_dict().items()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    torch.manual_seed(99)  # a fresh aggregator differs
    fresh = MetaDMoE("meta_dmoe", pretrain_fraction=0.0)
    fresh.setup(student.eval(), teachers, batch(70, 0.0))
    assert set(fresh.state_dict()) == set(saved)
    assert not all(torch.equal(v, saved[k]) for k, v in fresh.state_dict().items())
    fresh.load_state_dict(saved)
    fresh.eval()
    assert all(torch.equal(v, saved[k]) for k, v in fresh.state_dict().items())
    trained.eval()
    support, probe = support_images(), support_images(seed=53, count=4)
    with torch.no_grad():
        expected = trained.adapt(student, teachers, support)(probe)
        assert torch.equal(fresh.adapt(student, teachers, support)(probe), expected)
