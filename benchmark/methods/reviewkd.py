"""`reviewkd`: Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021.

Each teacher level is supervised by the student's features of that level and of every deeper
one (the "review"): student levels are fused from deep to shallow by attention-based fusion
(ABF) modules, and each fused output is compared with the teacher's level by the
hierarchical context loss (HCL). An ABF maps its student level to a middle width (1x1 conv +
BN); below the deepest level it upsamples the fused residual of the level beneath, and a
1x1 conv + sigmoid on the two concatenated yields two spatial attention maps that weight
their sum, which becomes the residual passed on; a 3x3 conv + BN at the teacher level's size
gives the output. HCL compares output and teacher map at full size and average-pooled to
4x4, 2x2 and 1x1 (the sizes smaller than the map), weights 1, 1/2, 1/4, 1/8, normalised:

    HCL(s, t) = (mse(s, t) + sum_k 2^-k mse(pool_k s, pool_k t)) / (1 + sum_k 2^-k).

Levels, as in the authors' code: the matched stage pairs of `adapters.stage_pairs`, plus the
pooled features as a 1x1 level. `stage_pairs` leaves a stem out (a ResNet's `act1`, see
`adapters`), as both codes do: the teacher's levels are `t_features[1:]` in the authors'
`CIFAR-100/train.py` and `feats[1:]` in mdistiller's `ReviewKD.py`, and the student's stem
falls off the end of their `zip` with one ABF fewer than its feature list; their CIFAR
networks so have four levels (three stages, the pooled features). Middle width min(512,
student's pooled width) (the authors').

The loss is the HCL summed over the levels, as both codes' `hcl` / `hcl_loss` add them up:

    L_ReviewKD = w * min(progress / warmup, 1) * sum_levels HCL(output_level, teacher_level).

Defaults, the authors' CIFAR-100 setting: w = 5 (`--kd-loss-weight 5.0` in the authors'
`CIFAR-100/script/reviewKD.sh` for resnet32x4 -> resnet8x4, the WRN-40-2 pairs and
ShuffleNetV1; 8.0 for ShuffleNetV2, 0.6 for resnet56 -> resnet20, 1.0 for resnet110 ->
resnet32; mdistiller's `configs/cifar100/reviewkd.yaml` sets `REVIEWKD_WEIGHT: 5.0` for its
resnet32x4 -> resnet8x4 run, over its `cfg.py` default of 1), CE weight 1 (both codes'
defaults), the term ramped up linearly over the first 20 of 240 epochs (the authors'
`--kd-warm-up 20` and `--epochs 240`, mdistiller's `WARMUP_EPOCHS = 20` and `EPOCHS = 240`),
here over the first 20/240 of training. Summed, the term grows with the number of levels: w = 5
was set for four; the suite's backbones give three to five (two stage pairs and the pooled
features with a `lenet`, four and the pooled with `resnet18` on both sides).

Deviations: resizing uses the suite's `resize_to` (average pooling down, bilinear up) rather
than nearest-neighbour interpolation; teacher maps are the suite's post-activation stages (the
authors' code uses the teacher's pre-activation features).

The ReviewKD term applies to every image of the batch, source and unlabelled target, beside
cross-entropy on the labelled source images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.adapters import probe_pair, resize_to, stage_pairs
from benchmark.methods.base import Batch, Method, distillation_step
from benchmark.methods.registry import METHODS
from benchmark.methods.teachers import Teachers
from benchmark.models.features import ModelOutputs
from benchmark.suite.protocols import Needs
from benchmark.suite.search import int_uniform, log_uniform, uniform

HCL_SIZES = (4, 2, 1)


def hcl_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over levels of the hierarchical context loss between maps of equal shape."""
    per_level = []
    for student, teacher in zip(student_maps, teacher_maps, strict=True):
        loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
        for size in HCL_SIZES:
            if size >= min(student.shape[-2:]):
                continue
            weight /= 2.0
            pooled_student = F.adaptive_avg_pool2d(student, (size, size))
            pooled_teacher = F.adaptive_avg_pool2d(teacher, (size, size))
            loss = loss + weight * F.mse_loss(pooled_student, pooled_teacher)
            total += weight
        per_level.append(loss / total)
    return torch.stack(per_level).sum()


def reviewkd_term(
    student_maps: list[torch.Tensor],
    teacher_maps: list[torch.Tensor],
    progress: float,
    weight: float,
    warmup_fraction: float,
) -> torch.Tensor:
    """The ReviewKD term as the method weights it: weight * min(progress / warmup_fraction, 1)
    * the HCL summed over levels (no ramp where warmup_fraction is 0)."""
    warmup = min(progress / warmup_fraction, 1.0) if warmup_fraction else 1.0
    return warmup * weight * hcl_loss(student_maps, teacher_maps)


class ABF(nn.Module):
    """Attention-based fusion of one student level with the fused residual from below."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid_channels),
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.attention = (
            nn.Sequential(nn.Conv2d(mid_channels * 2, 2, kernel_size=1), nn.Sigmoid())
            if fuse
            else None
        )
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(
        self, feature: torch.Tensor, residual: torch.Tensor | None, out_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output at `out_size`, the fused map passed on as the next level's residual)."""
        fused = self.conv1(feature)
        if self.attention is not None and residual is not None:
            residual = resize_to(residual, fused.shape[-2:])
            weights = self.attention(torch.cat([fused, residual], dim=1))
            fused = fused * weights[:, :1] + residual * weights[:, 1:]
        return self.conv2(resize_to(fused, out_size)), fused


def _levels(outputs: ModelOutputs, stages: list[int]) -> list[torch.Tensor]:
    """The chosen stages, shallow to deep, then the pooled features as a 1x1 map."""
    return [outputs.stages[i] for i in stages] + [outputs.pooled[:, :, None, None]]


@METHODS.register("reviewkd")
class ReviewKD(Method):
    family = "feature"
    paper = "Chen et al. CVPR 2021, Distilling Knowledge via Knowledge Review"
    needs = Needs(teacher="features", teachers="one")
    defaults = {"ce_weight": 1.0, "weight": 5.0, "warmup_fraction": 20 / 240, "max_mid": 512}
    search = {
        "weight": log_uniform(0.5, 10.0, "the authors' scripts use 0.6 to 8, by pair"),
        "warmup_fraction": uniform(0.0, 0.25, "the authors' 20 of 240 epochs; none to a quarter"),
        "max_mid": int_uniform(64, 512, "the fusion width's cap: the authors' 512, down to 64"),
    }

    def setup(self, student: nn.Module, teacher: Teachers | None, batch: Batch) -> None:
        student_probe, teacher_probe = probe_pair(student, teacher, batch)
        pairs = stage_pairs(student, teacher, student_probe, teacher_probe)
        self.student_stages = [s for s, _ in pairs]
        self.teacher_stages = [t for _, t in pairs]
        student_levels = _levels(student_probe, self.student_stages)
        teacher_levels = _levels(teacher_probe, self.teacher_stages)
        mid = min(int(self.params["max_mid"]), student_levels[-1].shape[1])
        deepest = len(student_levels) - 1
        # deepest first, the order the review runs in
        self.abfs = nn.ModuleList(
            ABF(student_levels[i].shape[1], mid, teacher_levels[i].shape[1], fuse=i < deepest)
            for i in reversed(range(len(student_levels)))
        ).to(batch.source_images.device)

    def losses(
        self, student: nn.Module, teacher: Teachers | None, batch: Batch
    ) -> dict[str, torch.Tensor]:
        step = distillation_step(
            self, student, teacher, batch, student_features=True, teacher_features=True
        )
        student_levels = _levels(step.student_outputs, self.student_stages)[::-1]
        teacher_levels = _levels(step.teacher_outputs, self.teacher_stages)[::-1]
        outputs, residual = [], None
        for feature, target, abf in zip(student_levels, teacher_levels, self.abfs, strict=True):
            output, residual = abf(feature, residual, target.shape[-2:])
            outputs.append(output)
        p = self.params
        review = reviewkd_term(
            outputs, teacher_levels, batch.progress, p["weight"], p["warmup_fraction"]
        )
        return {"ce": p["ce_weight"] * step.source_ce, "reviewkd": review}
