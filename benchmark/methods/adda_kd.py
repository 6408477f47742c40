"""`adda_kd`: Adversarial Discriminative Domain Adaptation, plus KD from the source teacher.

Tzeng, Hoffman, Saenko & Darrell, "Adversarial Discriminative Domain Adaptation", CVPR 2017.
Stage 1 trains a source encoder M_s and a classifier C on source labels. Stage 2 fixes M_s
and C and trains a separate (untied) target encoder M_t, initialised from M_s, against a
domain discriminator D in a GAN game with inverted labels (not a gradient-reversal layer):

    D:   min  -E_s log D(M_s(x_s)) - E_t log(1 - D(M_t(x_t)))
    M_t: min  -E_t log D(M_t(x_t))

and the target is classified by C(M_t(x_t)).

In this suite one student network is trained and then evaluated on the target, so the
student is M_t + C, and the method keeps M_s itself:

- stage 1 (training progress < `pretrain_fraction`): the student is trained as M_s + C on
  `kd`'s task loss (Hinton et al. 2015: T=4, 0.1 * CE on source labels + 0.9 * KD from the
  teacher on source and target images);
- at the first step of stage 2 the student is copied into the method's frozen source encoder
  M_s (its parameters need no gradient, so the optimizer never sees them; it runs in eval
  mode, and it and whether it was taken are saved in checkpoints: `get_extra_state`), and
  from then on the student is M_t, initialised from M_s as in the paper, with its classifier
  C fixed: the student's logits are its classifier applied with detached parameters, so C
  gets no gradient. M_t is trained by the inverted-label term and by KD from the teacher on
  the target images (0.9 * T^2 KL through the fixed C), the discriminator by its own term.

The GAN game in the loop's single backward pass and single optimizer: the discriminator's
term takes M_s's features (computed without gradients) and M_t's features detached, so it
sends no gradient to any encoder; the encoder's inverted-label term runs the discriminator
through `torch.func.functional_call` with its parameters detached, so it sends no gradient
to the discriminator. One backward of the sum therefore gives each player exactly the
gradient of its own objective, as alternating updates with separate optimizers would (both
computed at the same parameters); `tests/test_methods_transfer.py` checks the separation.

Defaults and their sources: the discriminator is the paper's LeNet setting, 3 fully connected
layers, 500-500 with ReLU, then one source-vs-target logit; the adversarial terms are
unweighted in the paper (weight 1); the task loss and temperature are `kd`'s.

Deviations: the paper trains stage 1 to convergence and then runs stage 2 on its own budget;
here one training run is split at `pretrain_fraction` (0.5) of its steps. The paper uses Adam
(lr 2e-4) for the adversarial stage and batch 128; here the suite's recipe sets the
one optimizer, learning rate, schedule and batch size for the student and the discriminator
alike. KD from the teacher (on source and target images in stage 1, on target images in
stage 2) is the suite's addition; `kd_weight: 0, ce_weight: 1` gives ADDA itself. D's inputs
are the pooled embeddings (the classifier's input), sized from a probe forward.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from benchmark.methods.base import Batch, Method
from benchmark.methods.kd import kd_loss
from benchmark.methods.parts import copy_matching_weights, probe_outputs
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform, uniform


def adda_discriminator(in_features: int, hidden: int = 500) -> nn.Sequential:
    """Tzeng et al.'s discriminator (LeNet setting): in -> 500 -> 500 -> 1, ReLU, no dropout."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, 1),
    )


def adda_discriminator_loss(
    source_domain_logits: torch.Tensor, target_domain_logits: torch.Tensor
) -> torch.Tensor:
    """-E_s log D(M_s(x_s)) - E_t log(1 - D(M_t(x_t))), D = sigmoid of the logits: each
    domain's mean binary cross-entropy, source labelled 1, target 0."""
    source = F.binary_cross_entropy_with_logits(
        source_domain_logits, torch.ones_like(source_domain_logits)
    )
    target = F.binary_cross_entropy_with_logits(
        target_domain_logits, torch.zeros_like(target_domain_logits)
    )
    return source + target


def adda_encoder_loss(target_domain_logits: torch.Tensor) -> torch.Tensor:
    """-E_t log D(M_t(x_t)): the target encoder's GAN loss with inverted labels (its
    features labelled source)."""
    return F.binary_cross_entropy_with_logits(
        target_domain_logits, torch.ones_like(target_domain_logits)
    )


def frozen_call(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """`module(inputs)` with the module's parameters detached: gradients reach the inputs,
    none reach the module."""
    detached = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, detached, (inputs,))


@METHODS.register("adda_kd")
class ADDAKD(Method):
    family = "generative-adversarial"
    paper = "Tzeng et al. CVPR 2017, Adversarial Discriminative Domain Adaptation (+ KD)"
    needs = Needs(teacher="logits", target_images=True)
    defaults = {
        "temperature": 4.0,
        "ce_weight": 0.1,
        "kd_weight": 0.9,
        "adversarial_weight": 1.0,
        "discriminator_hidden": 500,
        "pretrain_fraction": 0.5,
    }
    search = {
        "temperature": log_uniform(1.0, 8.0, "Hinton et al. use 1-20; CIFAR practice 2-8"),
        "kd_weight": log_uniform(0.1, 10.0, "a decade either side of the default"),
        "adversarial_weight": log_uniform(
            0.1, 10.0, "unweighted (1) in the paper; a decade either side"
        ),
        "discriminator_hidden": int_uniform(
            64, 1024, "DomainBed's DANN widths, 64-1024; ADDA's 500"
        ),
        "pretrain_fraction": uniform(
            0.25, 0.75, "the run's split between ADDA's two stages, around half"
        ),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        pooled = probe_outputs(student, batch.all_images()[:2]).pooled
        self.discriminator = adda_discriminator(
            pooled.shape[1], self.params["discriminator_hidden"]
        ).to(pooled.device)
        self.source_encoder = copy.deepcopy(student).requires_grad_(False).eval()
        self.adapting = False

    def get_extra_state(self) -> dict:
        """Whether stage 2 has begun (M_s taken), saved in checkpoints: a resumed run keeps
        its M_s (a parameter-free module state, read without a device synchronisation)."""
        return {"adapting": self.adapting} if hasattr(self, "adapting") else {}

    def set_extra_state(self, state: dict) -> None:
        if state:
            self.adapting = bool(state["adapting"])

    def train(self, mode: bool = True) -> ADDAKD:
        """The frozen source encoder stays in eval mode (BatchNorm's running statistics)."""
        super().train(mode)
        if hasattr(self, "source_encoder"):
            self.source_encoder.eval()
        return self

    @torch.no_grad()
    def take_source_encoder(self, student: nn.Module) -> None:
        """Stage 2 begins: M_s <- the student as stage 1 left it (parameters and buffers)."""
        copy_matching_weights(student, self.source_encoder)
        self.adapting = True

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        params = self.params
        if batch.progress < params["pretrain_fraction"] and not self.adapting:
            return self.pretrain_losses(student, teacher, batch)
        if not self.adapting:
            self.take_source_encoder(student)
        target_images = batch.target_images
        target_features = forward_outputs(student, target_images).pooled
        target_logits = frozen_call(student.get_classifier(), target_features)
        with torch.no_grad():
            source_features = forward_outputs(self.source_encoder, batch.source_images).pooled
        discriminator = adda_discriminator_loss(
            self.discriminator(source_features).squeeze(1),
            self.discriminator(target_features.detach()).squeeze(1),
        )
        adversarial = adda_encoder_loss(frozen_call(self.discriminator, target_features).squeeze(1))
        terms = {
            "ce": target_features.new_zeros(()),
            "kd": target_features.new_zeros(()),
            "discriminator": params["adversarial_weight"] * discriminator,
            "adversarial": params["adversarial_weight"] * adversarial,
        }
        if params["kd_weight"] > 0:
            kd = kd_loss(target_logits, teacher(target_images), params["temperature"])
            terms["kd"] = params["kd_weight"] * kd
        return terms

    def pretrain_losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        """Stage 1: the student as M_s + C, on `kd`'s task loss; no adversarial game yet."""
        params = self.params
        images = batch.all_images()
        logits = student(images)
        source_count = len(batch.source_labels)
        zero = logits.new_zeros(())
        terms = {
            "ce": params["ce_weight"]
            * self.cross_entropy(logits[:source_count], batch.source_labels),
            "kd": zero,
            "discriminator": zero,
            "adversarial": zero,
        }
        if params["kd_weight"] > 0:
            kd = kd_loss(logits, teacher(images), params["temperature"])
            terms["kd"] = params["kd_weight"] * kd
        return terms
