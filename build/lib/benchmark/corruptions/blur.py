"""Blur corruptions of ImageNet-C (Hendrycks & Dietterich, ICLR 2019); gaussian_blur is one
of its held-out validation corruptions. Parameters are in pixels, as published."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.corruptions import rng
from benchmark.corruptions.ops import clipped_zoom, filter2d, gaussian_filter, motion_blur
from benchmark.corruptions.registry import Levels, register


def disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """ImageNet-C's `disk`: an aliased disk on a 17 x 17 grid (wider past radius 8),
    normalised, then softened by OpenCV's GaussianBlur (3 x 3, or 5 x 5 past radius 8)."""
    half = 8 if radius <= 8 else int(radius)
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    ys, xs = torch.meshgrid(offsets, offsets, indexing="ij")
    disk = (xs**2 + ys**2 <= radius**2).double()
    disk = disk / disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    gauss = torch.exp(-(taps**2) / (2 * alias_sigma**2))
    gauss = gauss / gauss.sum()
    blurred = filter2d(disk[None, None], gauss[:, None] * gauss[None, :], "reflect101")
    return blurred[0, 0]


@register(
    "defocus_blur",
    "blur",
    Levels(
        small=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        large=((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    ),
)
def defocus_blur(x: torch.Tensor, disk: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """Convolution with an anti-aliased disk (radius, alias sigma), OpenCV border reflect."""
    return filter2d(x, disk_kernel(*disk), "reflect101")


def _local_copies(
    x: torch.Tensor, delta: int, iterations: int, seeds: torch.Tensor
) -> torch.Tensor:
    """ImageNet-C's pixel "swaps", vectorised.

    The published loop visits (h, w) from H - delta down to delta + 1, draws dx, dy with
    numpy's randint(-delta, delta) (upper bound excluded) and runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]`; on numpy views that copies x[h', w'] into
    x[h, w] and leaves x[h', w'] as it was. Visits run in descending pixel order, so a pixel
    reads the new value of its source when the source was visited before it (a larger
    index) and the old one otherwise. Following those links to their ends by pointer
    jumping gives every pixel's final source at once, which equals the sequential loop.
    """
    n, channels, size, _ = x.shape
    device = x.device
    lines = torch.arange(size - delta, delta, -1, device=device)
    visits = (lines[:, None] * size + lines[None, :]).reshape(-1)
    visited = torch.zeros(size * size, dtype=torch.bool, device=device)
    visited[visits] = True
    draws = rng.uniform(seeds, f"glass_blur/{delta}", iterations, len(visits), 2)
    steps = (draws * 2 * delta).floor().long() - delta  # (N, iterations, visits, [dx, dy])
    pixels = torch.arange(size * size, device=device).expand(n, -1)
    source = pixels.clone()
    for iteration in range(iterations):
        reads = pixels.clone()
        reads[:, visits] = visits + steps[:, iteration, :, 1] * size + steps[:, iteration, :, 0]
        chained = visited[pixels] & visited[reads] & (reads > pixels)
        link = torch.where(chained, reads, pixels)
        while True:
            jumped = link.gather(1, link)
            if torch.equal(jumped, link):
                break
            link = jumped
        source = source.gather(1, reads.gather(1, link))
    index = source[:, None, :].expand(-1, channels, -1)
    return x.reshape(n, channels, -1).gather(2, index).reshape(x.shape)


@register(
    "glass_blur",
    "blur",
    Levels(
        small=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        large=((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    ),
)
def glass_blur(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """(sigma, max delta, iterations): blur, quantise to uint8 by truncation as published,
    shuffle pixels locally (see `_local_copies`), blur again."""
    sigma, delta, iterations = spec
    blurred = torch.floor(gaussian_filter(x, sigma).clamp(0, 1) * 255) / 255
    return gaussian_filter(_local_copies(blurred, delta, iterations, seeds), sigma)


@register(
    "motion_blur",
    "blur",
    Levels(
        small=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        large=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    ),
)
def motion_blur_(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur (radius, sigma) at an angle drawn uniformly in [-45, 45].
    At 32 px severities 3 and 4 differ only in radius, whose extra taps weigh e^-18: they
    coincide, as in the published code."""
    degrees = rng.uniform(seeds, "motion_blur/angle", 1)[:, 0] * 90 - 45
    return motion_blur(x, *spec, degrees)


def _factors(stop: float, step: float) -> tuple[float, ...]:
    """The published np.arange(1, stop, step), float quirks included (1.06 and 1.11 are
    reached, 1.16 to 1.26 are not)."""
    return tuple(np.arange(1, stop, step).round(4).tolist())


@register(
    "zoom_blur",
    "blur",
    Levels(
        small=tuple(_factors(stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)),
        large=(
            _factors(1.11, 0.01),
            _factors(1.16, 0.01),
            _factors(1.21, 0.02),
            _factors(1.26, 0.02),
            _factors(1.31, 0.03),
        ),
    ),
)
def zoom_blur(x: torch.Tensor, factors: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """The mean of the image and its centre zooms by each factor (no randomness)."""
    out = x.clone()
    for factor in factors:
        out = out + clipped_zoom(x, factor)
    return out / (len(factors) + 1)


@register(
    "gaussian_blur",
    "validation",
    Levels(small=(0.4, 0.6, 0.7, 0.8, 1.0), large=(1, 2, 3, 4, 6)),
)
def gaussian_blur(x: torch.Tensor, sigma: float, seeds: torch.Tensor) -> torch.Tensor:
    """skimage's Gaussian filter of the given sigma (edge mode, truncated at 4 sigma)."""
    return gaussian_filter(x, sigma)
