"""Augmentation policies of a recipe's `augment`, applied to a stream's batch on the device.

- `none`: the images as they are; `standard`: `benchmark.data.tensors.augment`, the per-image
  affine and photometric jitter the field's `true` always meant (unchanged: same draws).
- `randaugment` (Cubuk et al. CVPR-W 2020; torchvision's N=2 ops at magnitude 9, the paper's
  ImageNet setting, untuned here since a suite's grid is what compares policies) and
  `autoaugment` (Cubuk et al. CVPR 2019) with its SVHN policy: learned on digits, the task of
  most of this benchmark's families, from operations (shear, invert, equalize, rotate) that
  keep a digit a digit; the CIFAR10 policy was learned for photographed objects. No flips
  in either (a mirrored digit is another symbol). They replace `standard`'s jitter.
- `mixup` (Zhang et al. ICLR 2018) and `cutmix` (Yun et al. ICCV 2019): `standard`'s jitter
  on every stream, then each labelled source minibatch mixed with a permutation of itself,
  its labels with it (`mix`): lambda ~ Beta(1, 1), the papers' CIFAR setting (mixup's alpha
  1.0 for small images, where 0.2 was its ImageNet choice; CutMix's alpha 1.0), which is
  uniform on [0, 1]; one lambda and one permutation per minibatch, as both papers' code.

torchvision's `transforms.v2` rather than albumentations (the design card's library): v2
takes the uint8 tensors already on the device, so no batch goes to the host and back.
v2 draws its operations from torch's global generator, once per call; each image is one
call here (per-image randomness), under a fork of the global generator seeded from the
stream's generator, so the same spec and seed give the same images, a resumed run the same
ones as an uninterrupted run, and the global generator (dropout's) is left as it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

JITTERED = ("standard", "mixup", "cutmix")  # policies that apply `standard`'s jitter
MIXING = ("mixup", "cutmix")  # policies that mix labelled source minibatches


def _transform(policy: str) -> v2.Transform | None:
    if policy == "randaugment":
        return v2.RandAugment()
    if policy == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.SVHN)
    return None


def transformed(images: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, 3, H, W) with the policy's per-image operations (RandAugment, AutoAugment);
    the images themselves, drawing nothing, for every other policy."""
    transform = _transform(policy)
    if transform is None:
        return images
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for image in images])


def _uniform(generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand((), generator=generator, device=generator.device).to(device)


def mix(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    policy: str,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a labelled minibatch (normalised float images, class indices):
    the mixed images and their labels as class probabilities (rows summing to 1), for the
    soft-label cross-entropy `F.cross_entropy` takes. Drawn on the device, no host sync."""
    batch, _, height, width = images.shape
    device = images.device
    partner = torch.randperm(batch, generator=generator, device=generator.device).to(device)
    lam = _uniform(generator, device)
    if policy == "mixup":
        mixed = lam * images + (1 - lam) * images[partner]
    else:  # a box of area (1 - lam) of the image, clipped at the edges, from the partner
        cut = torch.sqrt(1 - lam)
        centre_y = (_uniform(generator, device) * height).floor()
        centre_x = (_uniform(generator, device) * width).floor()
        half_h, half_w = (cut * height).floor() // 2, (cut * width).floor() // 2
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        in_rows = (rows >= centre_y - half_h) & (rows < centre_y + half_h)
        in_cols = (cols >= centre_x - half_w) & (cols < centre_x + half_w)
        box = in_rows[:, None] & in_cols[None, :]
        mixed = torch.where(box, images[partner], images)
        lam = 1 - box.float().mean()  # the area actually kept
    one_hot = F.one_hot(labels, num_classes).float()
    return mixed, lam * one_hot + (1 - lam) * one_hot[partner]
