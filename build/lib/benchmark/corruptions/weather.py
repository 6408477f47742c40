"""Weather corruptions of ImageNet-C (Hendrycks & Dietterich, ICLR 2019): snow, frost, fog
and brightness. Frost uses a procedural texture (see `textures.frost_texture`) in place of the
published frost photographs, which are not shipped here."""

from __future__ import annotations

import torch

from benchmark.corruptions import rng
from benchmark.corruptions.ops import clipped_zoom, motion_blur, to_gray
from benchmark.corruptions.registry import Levels, register
from benchmark.corruptions.textures import frost_texture, plasma_fractal, power_of_two


@register(
    "snow",
    "weather",
    Levels(
        small=(
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        large=(
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
    ),
)
def snow(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """(flake mean, flake std, zoom, threshold, blur radius, blur sigma, image weight):
    a thresholded, zoomed normal field streaked by a motion blur at an angle in
    [-135, -45] degrees, added twice (once turned 180 degrees) to an image brightened
    towards its grey level. The layer is quantised to uint8 where the published code
    saved it as PNG."""
    mean, std, zoom, threshold, radius, sigma, keep = spec
    size = x.shape[-1]
    flakes = clipped_zoom(mean + std * rng.normal(seeds, "snow/flakes", 1, size, size), zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
    flakes = torch.floor(flakes.clamp(0, 1) * 255) / 255
    degrees = rng.uniform(seeds, "snow/angle", 1)[:, 0] * 90 - 135
    flakes = torch.round(motion_blur(flakes, radius, sigma, degrees) * 255) / 255
    x = keep * x + (1 - keep) * torch.maximum(x, to_gray(x) * 1.5 + 0.5)
    return x + flakes + flakes.flip(-1, -2)


@register(
    "frost",
    "weather",
    Levels(
        small=((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        large=((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    ),
)
def frost(x: torch.Tensor, weights: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """image weight * x + frost weight * frost texture. The texture is procedural, not the
    published photographs (see `frost_texture`), so frost scores are comparable within this
    suite but not with published CIFAR-10-C / ImageNet-C frost numbers."""
    image_weight, frost_weight = weights
    return image_weight * x + frost_weight * frost_texture(seeds, x.shape[-1])


@register(
    "fog",
    "weather",
    Levels(
        small=((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        large=((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    ),
)
def fog(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """(strength, decay): add strength * plasma fractal, rescale by max / (max + strength).
    The fractal map is the next power of two (32 for CIFAR, 256 for ImageNet), cropped."""
    strength, decay = spec
    size = x.shape[-1]
    cloud = plasma_fractal(seeds, power_of_two(size), decay, "fog")[:, None, :size, :size]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * cloud.float()) * peak / (peak + strength)


@register(
    "brightness",
    "weather",
    Levels(small=(0.05, 0.1, 0.15, 0.2, 0.3), large=(0.1, 0.2, 0.3, 0.4, 0.5)),
)
def brightness(x: torch.Tensor, shift: float, seeds: torch.Tensor) -> torch.Tensor:
    """HSV value + shift, clipped to 1 (skimage's rgb2hsv/hsv2rgb round trip in closed form:
    with hue and saturation fixed, RGB scales with V; black has S = 0 and turns grey)."""
    value = x.amax(1, keepdim=True)
    lifted = (value + shift).clamp(max=1)
    return torch.where(value > 0, x * lifted / value.clamp(min=1e-12), lifted.expand_as(x))
