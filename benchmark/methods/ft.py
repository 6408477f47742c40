"""`ft`: Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor
Transfer", NeurIPS 2018.

The teacher's knowledge is first "paraphrased": a convolutional autoencoder (the
paraphraser) on the teacher's last stage compresses it to k * C_t channels, the factor, and
is trained to reconstruct the map (mean squared error). A translator (three 3x3 convs with BN
and LeakyReLU 0.1) maps the student's last stage to a factor of the same shape, and the
student learns to match the teacher's factor:

    L_FT = mean | F_T / ||F_T||_2 - F_S / ||F_S||_2 |   (p = 1)

each factor vectorised per image (C * H * W) and L2-normalised, the absolute difference
averaged over every entry, as the authors' code (Jangho-Kim/Factor-Transfer-pytorch,
`train_student.py`): an `nn.L1Loss` (mean reduction) between the two factors, each flattened
per image and L2-normalised (its `utils.FT`), the teacher's detached, weighted by `--beta`
(default 500) and added to the cross-entropy (weight 1); CIFAR-10, ResNet-56 -> ResNet-20,
paraphrase rate `--rate` 0.5. Where the two factors differ in size the larger is
average-pooled to the smaller (as RepDistiller does). The paraphraser and translator follow
RepDistiller's (three 3x3 convs each, LeakyReLU 0.1, BN in the translator only; the
paraphraser's decoder mirrors its encoder with transposed convs; the authors' translator has
no BN), built in `setup` from the probe shapes. Defaults: paraphrase rate k = 0.5, FT weight
500 and CE weight 1 (the authors' code: the weight that goes with this formula),
reconstruction weight 1. RepDistiller's CIFAR-100 `-b 200` belongs to another formula: its
`FactorTransfer` L2-normalises, per image, the channel mean of the squared factor (an
attention map of H * W entries, as AT's), not the C * H * W factor itself, so its weight does
not carry over.

Deviation: the paper pre-trains the paraphraser on the frozen teacher before the student is
trained; here it is trained jointly, its reconstruction loss a term of its own
(`ft_paraphraser`, which reaches only the paraphraser: the teacher's maps carry no gradient)
beside the FT term, which reaches only the student and translator (the teacher's factor is
detached, as in the authors' code). The student so chases a factor that settles as the
paraphraser learns, early in training.

Both terms apply to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import probe_pair, resize_to, smaller_size
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.suite.protocols import Needs
from benchmark.suite.search import log_uniform, uniform


def ft_loss(student_factor: torch.Tensor, teacher_factor: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the per-image L2-normalised factors (B, C, H, W), the
    larger pooled to the smaller size first."""
    size = smaller_size(student_factor, teacher_factor)
    student = F.normalize(resize_to(student_factor, size).flatten(1), dim=1)
    teacher = F.normalize(resize_to(teacher_factor, size).flatten(1), dim=1)
    return (student - teacher).abs().mean()


def _conv_block(
    in_channels: int, out_channels: int, batch_norm: bool, transposed: bool = False
) -> list[nn.Module]:
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    return [
        conv(in_channels, out_channels, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
        nn.LeakyReLU(0.1),
    ]


class Paraphraser(nn.Module):
    """Autoencoder on the teacher's map: C -> C -> k C -> k C (the factor), and back."""

    def __init__(self, channels: int, factor_channels: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            *_conv_block(channels, channels, False),
            *_conv_block(channels, factor_channels, False),
            *_conv_block(factor_channels, factor_channels, False),
        )
        self.decoder = nn.Sequential(
            *_conv_block(factor_channels, factor_channels, False, transposed=True),
            *_conv_block(factor_channels, channels, False, transposed=True),
            *_conv_block(channels, channels, False, transposed=True),
        )

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.encoder(feature)
        return factor, self.decoder(factor)


def translator(channels: int, factor_channels: int) -> nn.Sequential:
    """The student's side: C_s -> C_s -> k C_t -> k C_t, with BN."""
    return nn.Sequential(
        *_conv_block(channels, channels, True),
        *_conv_block(channels, factor_channels, True),
        *_conv_block(factor_channels, factor_channels, True),
    )


@METHODS.register("ft")
class FT(Method):
    family = "feature"
    paper = (
        "Kim et al. NeurIPS 2018, Paraphrasing Complex Network: Network Compression via "
        "Factor Transfer"
    )
    needs = Needs(teacher="features", teachers="one")
    defaults = {"rate": 0.5, "ce_weight": 1.0, "weight": 500.0, "paraphraser_weight": 1.0}
    search = {
        "rate": uniform(0.25, 1.0, "the factor's width: a factor 2 either side of the code's 0.5"),
        "weight": log_uniform(50.0, 5000.0, "a decade either side of the code's 500"),
        "paraphraser_weight": log_uniform(
            0.1, 10.0, "the paraphraser's step size; a decade either side of 1"
        ),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        student_probe, teacher_probe = probe_pair(student, teacher, batch)
        student_channels = student_probe.stages[-1].shape[1]
        teacher_channels = teacher_probe.stages[-1].shape[1]
        factor_channels = max(1, int(teacher_channels * self.params["rate"]))
        device = batch.source_images.device
        self.paraphraser = Paraphraser(teacher_channels, factor_channels).to(device)
        self.translator = translator(student_channels, factor_channels).to(device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        teacher_map = step.teacher_outputs.stages[-1].detach()
        teacher_factor, reconstruction = self.paraphraser(teacher_map)
        student_factor = self.translator(step.student_outputs.stages[-1])
        ft = ft_loss(student_factor, teacher_factor.detach())
        return {
            "ce": self.params["ce_weight"] * step.source_ce,
            "ft": self.params["weight"] * ft,
            "ft_paraphraser": self.params["paraphraser_weight"]
            * F.mse_loss(reconstruction, teacher_map),
        }
