"""Noise corruptions of ImageNet-C (Hendrycks & Dietterich, ICLR 2019), per element and
channel as in the published code; speckle is one of its held-out validation corruptions.

Each severity reuses the image's same random field, so severities differ only by the
published parameter and the corruption grows monotonically with it.
"""

from __future__ import annotations

import torch

from benchmark.corruptions import rng
from benchmark.corruptions.registry import Levels, register


@register(
    "gaussian_noise",
    "noise",
    Levels(small=(0.04, 0.06, 0.08, 0.09, 0.10), large=(0.08, 0.12, 0.18, 0.26, 0.38)),
)
def gaussian_noise(x: torch.Tensor, sigma: float, seeds: torch.Tensor) -> torch.Tensor:
    """x + N(0, sigma^2) on [0, 1]."""
    return x + sigma * rng.normal(seeds, "gaussian_noise", *x.shape[1:])


@register("shot_noise", "noise", Levels(small=(500, 250, 100, 75, 50), large=(60, 25, 12, 5, 3)))
def shot_noise(x: torch.Tensor, photons: float, seeds: torch.Tensor) -> torch.Tensor:
    """Poisson(x * photons) / photons: fewer photons, more shot noise."""
    return rng.poisson(x * photons, seeds, "shot_noise") / photons


@register(
    "impulse_noise",
    "noise",
    Levels(small=(0.01, 0.02, 0.03, 0.05, 0.07), large=(0.03, 0.06, 0.09, 0.17, 0.27)),
)
def impulse_noise(x: torch.Tensor, amount: float, seeds: torch.Tensor) -> torch.Tensor:
    """skimage's salt-and-pepper: each element flips with probability `amount`, to 1 or 0
    with even odds (skimage >= 0.19's per-element definition)."""
    flip = rng.uniform(seeds, "impulse_noise/flip", *x.shape[1:]) <= amount
    salt = rng.uniform(seeds, "impulse_noise/salt", *x.shape[1:]) <= 0.5
    return torch.where(flip, salt.to(x.dtype), x)


@register(
    "speckle_noise",
    "validation",
    Levels(small=(0.06, 0.10, 0.12, 0.16, 0.20), large=(0.15, 0.20, 0.35, 0.45, 0.60)),
)
def speckle_noise(x: torch.Tensor, sigma: float, seeds: torch.Tensor) -> torch.Tensor:
    """Multiplicative noise x + x * N(0, sigma^2)."""
    return x + x * sigma * rng.normal(seeds, "speckle_noise", *x.shape[1:])
