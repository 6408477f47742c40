"""`zskt`: Micaelli & Storkey, "Zero-shot Knowledge Transfer via Adversarial Belief Matching",
NeurIPS 2019 (ZSKT).

No real image is used. A generator G turns standard normal codes z into pseudo images x_p on
which the student S disagrees with the frozen teacher T, and S learns to agree on them:

    G: max  D(x_p) = KL(T(x_p) || S(x_p))
    S: min  D(x_p) + beta * AT(x_p),  beta = 250

with AT Zagoruyko & Komodakis' attention transfer between the networks' stage features (`at`'s
`at_loss`, p = 2, on the stage pairs of `adapters.spatial_pairs`). The paper's Algorithm 1
alternates: each pseudo batch (one draw of z) gets n_G = 1 generator step and then n_S = 10
student steps. The method counts the loop's steps (`step`, saved with the method in checkpoints,
as is the batch's z, so a resumed run continues the cycle where it stopped): in a cycle of
n_G + n_S steps, the first draws z from `Synthetic.latent` and the first n_G train G, the rest
S on the images G makes of that same z (G unchanged meanwhile, so they are the images G's last
step made). Every step returns the same three terms, the idle player's as zeros, so the idle
player's gradients stay None and the loop's AdamW skips it (no update, no weight decay).

Each player only its own gradient: on a generator step the student runs through
`torch.func.functional_call` with its parameters detached (`adda_kd.frozen_call`), and the
teacher's frozen network (`teachers.module()`, with gradients on), so the term reaches the
images and G, not the student; on a student step G's images are made without gradients.
`tests/test_methods_transfer.py` checks both.

Defaults and their sources: the authors' CIFAR-10 command (`scripts/ZeroShot/main0.sh`: n_G 1,
n_S 10, z 100, KL temperature 1, AT beta 250) and the paper's Section 4 (n_G = 1, n_S = 10).
The divergence is the authors' code's, `F.kl_div`'s elementwise mean: the per-image KL summed
over classes, averaged over images and divided by the number of classes, without a T^2 factor
(their `divergence`); beta = 250 was tuned against that scale.

Deviations: the authors use two Adam optimizers (lr_S 2e-3, lr_G 1e-3), each with its cosine
schedule, batch 128, and clip each player's gradient norm to 5; here the suite's recipe sets
one optimizer, learning rate, schedule and batch size (`Synthetic.count`) for both, and the
loop clips nothing. The paper counts pseudo batches (80k on CIFAR-10); here an epoch is as many
generated images as the teacher's training domain holds (the loop's count), every loop step one
player's step. AT is `at`'s: the mean over the matched stage pairs (the authors' code sums over
the three groups of a wide ResNet, so their weight counts three times), pairs matched by
relative depth, since the suite's teacher and student need not share a family. The authors'
code computes the teacher's outputs once per pseudo batch for its student steps; here they are
recomputed each step (the same values). The generator is `parts.ImageGenerator`, DAFL's
layout: the authors' is the same but for its first map (10 x 10, upsampled x1.6 to 16 x 16 for
32 px images, where here H/4 x W/4 is upsampled x2) and its output (a BatchNorm without affine
parameters, no tanh: `generator_output: batchnorm`; the default tanh keeps images in the
students' input range [-1, 1] as `Synthetic` promises). The paper's teacher is a single
network: `teachers: one`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import spatial_pairs
from benchmark.methods.adda_kd import frozen_call
from benchmark.methods.at import at_loss
from benchmark.methods.base import Batch, Method
from benchmark.methods.parts import ImageGenerator, synthetic_of, synthetic_probe
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import forward_outputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform

ATTENTION_P = 2.0  # the authors' attention map: the channel mean of f^2


def zskt_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(softmax(z_t / T) || softmax(z_s / T)) as the authors' code computes it: the mean
    over images and classes of p_t (log p_t - log p_s), i.e. the batch-mean KL over the
    number of classes, no T^2."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    # written out: `reduction="mean"` (the authors' call) is to become "batchmean" in torch
    total = F.kl_div(log_student, log_teacher, reduction="sum", log_target=True)
    return total / student_logits.numel()


def zskt_generator_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The generator's adversarial loss: minus the divergence it maximises."""
    return -zskt_divergence(student_logits, teacher_logits, temperature)


@METHODS.register("zskt")
class ZSKT(Method):
    family = "generative-adversarial"
    paper = (
        "Micaelli & Storkey NeurIPS 2019, "
        "Zero-shot Knowledge Transfer via Adversarial Belief Matching"
    )
    needs = Needs(teacher="features", teachers="one", data_free=True)
    defaults = {
        "latent_dim": 100,
        "beta": 250.0,
        "temperature": 1.0,
        "generator_steps": 1,
        "student_steps": 10,
        "generator_output": "tanh",
        "generator_width": 128,
    }
    search = {
        "beta": log_uniform(25.0, 2500.0, "a decade either side of the authors' 250"),
        "temperature": log_uniform(1.0, 4.0, "the authors' 1, up to KD's usual 4"),
        "student_steps": int_uniform(
            1, 20, "the paper's n_S = 10 student steps per generator step"
        ),
    }

    def __init__(self, name: str, label_smoothing: float = 0.0, **params) -> None:
        super().__init__(name, label_smoothing, **params)
        self.step = 0  # loop steps taken: where in the generator/student cycle the run is

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        synthetic = synthetic_of(batch, self.name)
        device = synthetic.generator.device
        self.generator = ImageGenerator(
            self.params["latent_dim"],
            synthetic.shape,
            self.params["generator_output"],
            width=self.params["generator_width"],
        ).to(device)
        probe = synthetic_probe(synthetic)
        self.pairs = spatial_pairs(student, teacher, probe, "zskt", "attention map")
        # the pseudo batch's codes, drawn at each cycle's first step; saved with the method
        self.register_buffer(
            "latent", torch.zeros((synthetic.count, self.params["latent_dim"]), device=device)
        )

    def get_extra_state(self) -> dict:
        """The step count, saved in checkpoints (a Python int: no device synchronisation)."""
        return {"step": self.step}

    def set_extra_state(self, state: dict) -> None:
        if state:
            self.step = int(state["step"])

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        params = self.params
        synthetic = synthetic_of(batch, self.name)
        position = self.step % (params["generator_steps"] + params["student_steps"])
        self.step += 1
        if position == 0:
            self.latent = synthetic.latent(params["latent_dim"])
        if position < params["generator_steps"]:
            return self.generator_losses(student, teacher)
        return self.student_losses(student, teacher)

    def generator_losses(self, student: nn.Module, teacher: Teachers) -> dict[str, torch.Tensor]:
        """G's step: maximise the divergence; the student's parameters get no gradient."""
        images = self.generator(self.latent)
        teacher_logits = teacher.module()(images)  # with gradients, to the images
        student_logits = frozen_call(student, images)
        generator = zskt_generator_loss(student_logits, teacher_logits, self.params["temperature"])
        zero = generator.new_zeros(())
        return {"generator": generator, "kl": zero, "at": zero}

    def student_losses(self, student: nn.Module, teacher: Teachers) -> dict[str, torch.Tensor]:
        """S's step: match the teacher's beliefs and attention on G's images, G untouched."""
        with torch.no_grad():
            images = self.generator(self.latent)
        teacher_out = teacher.outputs(images)
        student_out = forward_outputs(student, images)
        kl = zskt_divergence(student_out.logits, teacher_out.logits, self.params["temperature"])
        at = at_loss(
            [student_out.stages[s] for s, _ in self.pairs],
            [teacher_out.stages[t] for _, t in self.pairs],
            ATTENTION_P,
        )
        return {"generator": kl.new_zeros(()), "kl": kl, "at": self.params["beta"] * at}
