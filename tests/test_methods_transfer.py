"""Method-specific checks of the transfer methods `ssl_rotation`, `sskd` and `adda_kd`, and
of the data-free methods `dafl` and `zskt`.

Rotations: `rotate` is numpy's rot90 image by image; the same seed draws the same rotations
and a method restored from its state dict (a resumed run) draws on where the saved one
stopped. ADDA: the GAN game in one backward pass, each player getting only its own term's
gradient (the discriminator none from the encoder's inverted-label term, the encoder none
from the discriminator's term, the fixed classifier none at all in stage 2), and the source
encoder taken once, frozen, and restored with the method's state. SSKD: the rotated copies'
layout and the error filter. DAFL and ZSKT: each player (generator, student) gets only its
own terms' gradient; ZSKT alternates one generator step with ten student steps on one draw of
codes, and resumes its cycle from the method's state; both train a LeNet from a ResNet-18
teacher through the loop's own step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.errors import XdkdError
from benchmark.methods import METHODS, Batch
from benchmark.methods.base import Synthetic
from benchmark.methods.parts import ImageGenerator
from benchmark.methods.sskd import kept_rows, sskd_ss_loss, with_rotations
from benchmark.methods.ssl_rotation import rotate
from benchmark.methods.teachers import Member, Teachers, freeze
from benchmark.models import create_backbone
from benchmark.run.fastpath import FastPath
from benchmark.run.train import make_optimizer, train_step
from benchmark.suite.config import BackboneSpec, Recipe

CLASSES = 10


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one core


def lenet() -> nn.Module:
    return create_backbone(BackboneSpec(name="lenet"), CLASSES)


def teachers() -> Teachers:
    return Teachers([Member("teacher", freeze(lenet()), None)], CLASSES, "features")


def batch(seed: int, progress: float = 0.0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch.single(
        torch.randn((6, 3, 32, 32), generator=generator),
        torch.randint(CLASSES, (6,), generator=generator),
        torch.randn((5, 3, 32, 32), generator=generator),
        progress=progress,
    )


def build(name: str, seed: int = 0, **params):
    """A method set up on a fresh LeNet student with a LeNet teacher, the global generator
    seeded as the harness seeds it per run."""
    torch.manual_seed(seed)
    student, view = lenet().train(), teachers()
    method = METHODS.get(name)(name, **params)
    method.setup(student, view, batch(100))
    method.train()
    return method, student, view


# --- ssl_rotation ------------------------------------------------------------------------


def test_rotate_turns_each_image_by_its_quarter_turns() -> None:
    images = torch.randn((5, 2, 4, 4))
    rotations = torch.tensor([0, 1, 2, 3, 1])
    turned = rotate(images, rotations).numpy()
    for i, k in enumerate(rotations.tolist()):
        np.testing.assert_array_equal(turned[i], np.rot90(images[i].numpy(), k, axes=(1, 2)))


def test_rotate_refuses_non_square_images() -> None:
    with pytest.raises(XdkdError, match="square"):
        rotate(torch.zeros((2, 3, 4, 6)), torch.tensor([1, 2]))


def test_same_seed_same_rotations_and_losses() -> None:
    first, student_a, view_a = build("ssl_rotation", seed=3)
    second, student_b, view_b = build("ssl_rotation", seed=3)
    other, _, _ = build("ssl_rotation", seed=4)
    drawn = first.draw_rotations(64)
    assert torch.equal(drawn, second.draw_rotations(64))
    assert not torch.equal(drawn, other.draw_rotations(64))
    values = []
    for method, student, view in [(first, student_a, view_a), (second, student_b, view_b)]:
        torch.manual_seed(11)  # the student's dropout draws from the run's global generator
        terms = method.losses(student, view, batch(1))
        values.append({name: float(value.detach()) for name, value in terms.items()})
    assert values[0] == values[1]


def test_a_restored_method_draws_on_where_the_saved_one_stopped() -> None:
    method, _, _ = build("ssl_rotation", seed=5)
    method.draw_rotations(32)
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in method.state_dict().items()}
    expected = method.draw_rotations(32)
    resumed, _, _ = build("ssl_rotation", seed=99)  # setup seeds a different generator
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.draw_rotations(32), expected)
    assert torch.equal(resumed.rotation_head.weight, method.rotation_head.weight)


# --- sskd ----------------------------------------------------------------------------------


def test_rotated_copies_are_laid_out_rotation_by_rotation() -> None:
    images = torch.randn((3, 1, 4, 4))
    views = with_rotations(images)
    assert views.shape == (12, 1, 4, 4)
    for j in range(12):
        quarter, image = divmod(j, 3)
        assert torch.equal(views[j], torch.rot90(images[image], quarter, dims=(1, 2)))


def test_error_filter_keeps_correct_rows_and_the_best_ranked_wrong_ones() -> None:
    rank = torch.tensor([0, 2, 1, 0, 3, 1, 1])  # 5 wrong: keep int(5 * 0.6) = 3
    assert kept_rows(rank, 0.6).tolist() == [1, 0, 1, 1, 0, 1, 1]
    assert kept_rows(rank, 0.0).tolist() == [1, 0, 0, 1, 0, 0, 0]
    assert kept_rows(rank, 1.0).tolist() == [1] * 7


def test_ss_loss_is_zero_when_the_student_matches_the_teacher() -> None:
    normal, transformed = torch.randn((4, 6)), torch.randn((12, 6))
    loss = sskd_ss_loss(normal, transformed, normal, transformed, 0.5, 0.75)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


# --- adda_kd -------------------------------------------------------------------------------


def grads(module: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def has_gradient(module: nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def no_gradient(module: nn.Module) -> bool:
    return all(g is None for g in grads(module))


def encoder_parameters(student: nn.Module) -> list[nn.Parameter]:
    classifier = {id(p) for p in student.get_classifier().parameters()}
    return [p for p in student.parameters() if id(p) not in classifier]


def backward_alone(term: torch.Tensor, *modules: nn.Module) -> None:
    for module in modules:
        module.zero_grad(set_to_none=True)
    term.backward(retain_graph=True)


def test_adda_pretrains_without_the_game() -> None:
    method, student, view = build("adda_kd")
    terms = method.losses(student, view, batch(1, progress=0.2))
    assert float(terms["discriminator"]) == 0.0 and float(terms["adversarial"]) == 0.0
    assert float(terms["ce"].detach()) > 0 and float(terms["kd"].detach()) > 0
    assert not method.adapting


def test_adda_players_get_only_their_own_gradients() -> None:
    method, student, view = build("adda_kd")
    terms = method.losses(student, view, batch(1, progress=0.7))
    discriminator, classifier = method.discriminator, student.get_classifier()
    assert float(terms["ce"].detach()) == 0.0  # stage 2: no source labels for the target encoder

    backward_alone(terms["discriminator"], student, discriminator)
    assert has_gradient(discriminator)
    assert no_gradient(student), "the discriminator's term reached the encoder"

    backward_alone(terms["adversarial"], student, discriminator)
    assert no_gradient(discriminator), "the encoder's term reached the discriminator"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder_parameters(student))
    assert no_gradient(classifier), "the fixed classifier got a gradient"

    backward_alone(terms["kd"], student, discriminator)
    assert no_gradient(discriminator) and no_gradient(classifier)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder_parameters(student))
    assert no_gradient(method.source_encoder)


def test_adda_takes_the_source_encoder_once_and_keeps_it_on_resume() -> None:
    method, student, view = build("adda_kd")
    method.losses(student, view, batch(1, progress=0.2))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1)  # stage 1 trained the student
    taken = {k: v.clone() for k, v in student.state_dict().items()}
    method.losses(student, view, batch(2, progress=0.6))
    assert method.adapting
    for name, value in method.source_encoder.state_dict().items():
        assert torch.equal(value, taken[name])
    assert not any(p.requires_grad for p in method.source_encoder.parameters())
    assert not method.source_encoder.training
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1)  # the target encoder moves on; M_s stays
    method.losses(student, view, batch(3, progress=0.8))
    for name, value in method.source_encoder.state_dict().items():
        assert torch.equal(value, taken[name])

    saved = method.state_dict()
    resumed, _, _ = build("adda_kd", seed=7)
    resumed.load_state_dict(saved)
    assert resumed.adapting
    for name, value in resumed.source_encoder.state_dict().items():
        assert torch.equal(value, taken[name])
    params = [p for p in resumed.parameters() if p.requires_grad]
    assert {id(p) for p in params} == {id(p) for p in resumed.discriminator.parameters()}


# --- dafl and zskt -------------------------------------------------------------------------


def synthetic_batch(seed: int, count: int = 8) -> Batch:
    """A data-free step's batch: no real image, what the method may generate."""
    return Batch([], synthetic=Synthetic(count, (3, 32, 32), torch.Generator().manual_seed(seed)))


def build_data_free(name: str, seed: int = 0, teacher: str = "lenet", **params):
    torch.manual_seed(seed)
    student = lenet().train()
    network = freeze(create_backbone(BackboneSpec(name=teacher), CLASSES))
    view = Teachers([Member("teacher", network, None)], CLASSES, "features")
    method = METHODS.get(name)(name, **params)
    method.setup(student, view, synthetic_batch(100))
    method.train()
    return method, student, view


def test_data_free_methods_refuse_real_batches() -> None:
    for name in ("dafl", "zskt"):
        method = METHODS.get(name)(name)
        with pytest.raises(XdkdError, match="data_free"):
            method.setup(lenet(), teachers(), batch(0))


def test_dafl_players_get_only_their_own_gradients() -> None:
    method, student, view = build_data_free("dafl")
    generator, network = method.generator, view.module()
    terms = method.losses(student, view, synthetic_batch(1))
    assert set(terms) == {"one_hot", "activation", "entropy", "kd"}
    for name in ("one_hot", "activation", "entropy"):
        backward_alone(terms[name], student, generator)
        assert has_gradient(generator), f"'{name}' did not reach the generator"
        assert no_gradient(student), f"the generator's term '{name}' reached the student"
    backward_alone(terms["kd"], student, generator)
    assert has_gradient(student)
    assert no_gradient(generator), "the student's KD term reached the generator"
    assert no_gradient(network)


def test_the_generator_makes_the_synthetic_shape_in_the_chosen_output() -> None:
    latent = synthetic_batch(3).synthetic.latent(100)
    method, _, _ = build_data_free("dafl")
    with torch.no_grad():
        images = method.generator(latent)
    assert images.shape == (8, 3, 32, 32) and float(images.abs().max()) <= 1.0  # tanh
    for output in ("tanh+batchnorm", "batchnorm"):  # DAFL's code, ZSKT's: standardised
        method, _, _ = build_data_free("zskt", generator_output=output)
        with torch.no_grad():
            images = method.generator(latent)
        assert float(images.mean((0, 2, 3)).abs().max()) < 1e-5
        assert float((images.var((0, 2, 3), unbiased=False) - 1).abs().max()) < 1e-3
    with pytest.raises(XdkdError, match="multiples of 4"):
        ImageGenerator(100, (3, 30, 32))


def test_the_generator_width_sets_its_channels_and_the_images_keep_their_shape() -> None:
    latent = synthetic_batch(3).synthetic.latent(100)
    method, _, _ = build_data_free("dafl")
    narrow, _, _ = build_data_free("dafl", generator_width=16)
    assert method.generator.block1[0].out_channels == 128  # both papers' width by default
    assert narrow.generator.block1[0].out_channels == 16
    assert narrow.generator.block2[0].out_channels == 8
    with torch.no_grad():
        assert narrow.generator(latent).shape == method.generator(latent).shape
    with pytest.raises(XdkdError, match="generator_width must be 2 or more"):
        ImageGenerator(100, (3, 32, 32), width=1)


def cycle_kind(terms: dict[str, torch.Tensor]) -> str:
    idle = [name for name, value in terms.items() if value.requires_grad is False]
    return "generator" if set(idle) == {"kl", "at"} else "student"


def test_zskt_alternates_one_generator_step_with_ten_student_steps() -> None:
    method, student, view = build_data_free("zskt")
    generator, network = method.generator, view.module()
    kinds, latents = [], []
    for step in range(12):
        terms = method.losses(student, view, synthetic_batch(step))
        assert set(terms) == {"generator", "kl", "at"}
        kinds.append(cycle_kind(terms))
        latents.append(method.latent.clone())
        backward_alone(sum(terms.values()), student, generator)
        if kinds[-1] == "generator":
            assert float(terms["kl"]) == 0.0 and float(terms["at"]) == 0.0
            assert has_gradient(generator)
            assert no_gradient(student), "the generator's term reached the student"
        else:
            assert float(terms["generator"]) == 0.0
            assert float(terms["kl"].detach()) > 0 and float(terms["at"].detach()) > 0
            assert has_gradient(student)
            assert no_gradient(generator), "the student's terms reached the generator"
        assert no_gradient(network)
    assert kinds == ["generator"] + ["student"] * 10 + ["generator"]
    assert all(torch.equal(latent, latents[0]) for latent in latents[1:11]), "codes redrawn"
    assert not torch.equal(latents[11], latents[0]), "the next cycle kept the old codes"
    assert method.step == 12


def test_zskt_resumes_its_cycle_from_the_method_state() -> None:
    method, student, view = build_data_free("zskt", student_steps=2)
    for step in range(2):  # generator, student: one student step of the cycle left
        method.losses(student, view, synthetic_batch(step))
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in method.state_dict().items()}
    resumed, _, _ = build_data_free("zskt", seed=7, student_steps=2)
    resumed.load_state_dict(saved)
    assert resumed.step == 2 and torch.equal(resumed.latent, method.latent)
    torch.manual_seed(11)  # the student's dropout draws from the run's global generator
    expected = method.losses(student, view, synthetic_batch(5))
    torch.manual_seed(11)
    terms = resumed.losses(student, view, synthetic_batch(5))
    assert cycle_kind(terms) == cycle_kind(expected) == "student"
    assert float(terms["kl"].detach()) == pytest.approx(float(expected["kl"].detach()))
    assert cycle_kind(resumed.losses(student, view, synthetic_batch(6))) == "generator"


@pytest.mark.parametrize("name", ["dafl", "zskt"])
def test_data_free_methods_train_a_lenet_from_a_resnet18_teacher(name: str) -> None:
    method, student, view = build_data_free(name, teacher="resnet18")
    network = view.module()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    params = [p for p in [*student.parameters(), *method.parameters()] if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, Recipe(schedule="constant"), total_steps=3)
    # dafl: both players every step; zskt: the generator, then two student steps
    expected = {"dafl": ["both"] * 3, "zskt": ["generator", "student", "student"]}[name]
    for step, players in enumerate(expected):
        batch = synthetic_batch(10 + step)
        terms, total = train_step(
            method, student, view, batch, optimizer, scheduler, FastPath(), torch.device("cpu")
        )
        assert all(torch.isfinite(value.detach()) for value in terms.values())
        assert torch.isfinite(total)
        assert has_gradient(student) == (players in ("both", "student")), f"step {step}"
        assert has_gradient(method.generator) == (players in ("both", "generator")), f"step {step}"
        if players == "generator":
            assert no_gradient(student)
        if players == "student":
            assert no_gradient(method.generator)
        assert not any(module.training for module in network.modules())
        assert all(p.grad is None for p in network.parameters())
        for key, value in network.state_dict().items():
            assert torch.equal(value, before[key]), f"teacher tensor '{key}' changed"
