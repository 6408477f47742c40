"""Spatter, a held-out validation corruption of ImageNet-C (Hendrycks & Dietterich, ICLR
2019): water drops (severities 1-3) or mud (4-5) on the lens.

The liquid layer is a thresholded, blurred normal field drawn from the image's seed. The
water branch's drop shading runs OpenCV's Canny, distance transform and histogram
equalisation as published, one image at a time on the CPU (opencv-python-headless).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from benchmark.corruptions import rng
from benchmark.corruptions.ops import gaussian_filter
from benchmark.corruptions.registry import Levels, register

WATER = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD = (63 / 255, 42 / 255, 20 / 255)  # brown
_SHADING_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)


def _drop_shading(liquid: np.ndarray) -> np.ndarray:
    """The published water branch's edge-distance shading of one (H, W) liquid layer."""
    layer = (np.clip(liquid, 0, 1) * 255).astype(np.uint8)
    dist = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, _SHADING_KERNEL)
    return cv2.blur(dist, (3, 3)).astype(np.float32)


def _water(x: torch.Tensor, liquid: torch.Tensor, strength: float) -> torch.Tensor:
    layers = liquid[:, 0].double().cpu().numpy()
    shaded = np.stack([layer * _drop_shading(layer) for layer in layers])
    peak = shaded.reshape(len(shaded), -1).max(1)[:, None, None]
    mask = torch.from_numpy(strength * shaded / np.where(peak > 0, peak, 1)).to(x)[:, None]
    return x + mask * torch.tensor(WATER, device=x.device).view(1, 3, 1, 1)


def _mud(x: torch.Tensor, liquid: torch.Tensor, threshold: float, sigma: float) -> torch.Tensor:
    mask = gaussian_filter((liquid > threshold).to(x), sigma)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return x * (1 - mask) + mask * torch.tensor(MUD, device=x.device).view(1, 3, 1, 1)


@register(
    "spatter",
    "validation",
    Levels(
        small=(
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ),
        large=(
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ),
    ),
)
def spatter(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """(liquid mean, std, blur sigma, threshold, strength or mud sigma, mud?): a normal
    field blurred and thresholded into drops, drawn as shaded water or opaque mud. The
    water layer is clipped to [0, 1] before its uint8 cast (the published cast wraps)."""
    mean, std, sigma, threshold, strength, is_mud = spec
    size = x.shape[-1]
    liquid = gaussian_filter(mean + std * rng.normal(seeds, "spatter", 1, size, size), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    return _mud(x, liquid, threshold, strength) if is_mud else _water(x, liquid, strength)
