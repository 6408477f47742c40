"""Random textures for the weather corruptions: ImageNet-C's plasma fractal and a
procedural stand-in for its frost photographs (Hendrycks & Dietterich, ICLR 2019)."""

from __future__ import annotations

import math

import torch

from benchmark.corruptions import rng
from benchmark.corruptions.ops import gaussian_filter, pad, shift_edge


def plasma_fractal(seeds: torch.Tensor, mapsize: int, decay: float, stream: str) -> torch.Tensor:
    """ImageNet-C's diamond-square plasma fractal, one per image: (N, mapsize, mapsize) in
    [0, 1]. As published, each displacement is `wibble * uniform(-wibble, wibble)` and wibble
    shrinks by `decay` per level; the draws come from `stream`, so the same seed gives the same
    cloud at every decay."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"plasma fractal size must be a power of two, got {mapsize}")
    n = len(seeds)
    grid = torch.zeros(n, mapsize, mapsize, dtype=torch.float64, device=seeds.device)
    step, wibble, level = mapsize, 100.0, 0

    def wibbled_mean(total: torch.Tensor, part: str) -> torch.Tensor:
        u = rng.uniform(seeds, f"{stream}/{level}/{part}", *total.shape[1:]).double()
        return total / 4 + wibble * wibble * (2 * u - 1)

    while step >= 2:
        half = step // 2
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        grid[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(squares, "square")
        centres = grid[:, half:mapsize:step, half:mapsize:step]
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        left = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        grid[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(left, "left")
        top = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        grid[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(top, "top")
        step, wibble, level = half, wibble / decay, level + 1
    flat = grid.reshape(n, -1)
    low = flat.min(1).values[:, None, None]
    high = flat.max(1).values[:, None, None]
    return (grid - low) / (high - low)


def power_of_two(size: int) -> int:
    return 1 << max(0, math.ceil(math.log2(size)))


FROST_TINT = (0.80, 0.89, 1.0)  # white-blue ice
FROST_ORIENTATIONS = 6


def frost_texture(seeds: torch.Tensor, size: int) -> torch.Tensor:
    """A procedural frost layer, (N, 3, size, size) in [0, 1].

    ImageNet-C overlays crops of six frost photographs that are not shipped here. This
    stand-in draws ice-crystal-like noise: sparse random nuclei grow needles that fade
    towards their tips, along six orientations blended by a smooth random orientation field
    (plasma fractal), so the grain curls from patch to patch like frost ferns; needles are
    brightest where a second fractal says ice has grown, over a faint haze, tinted
    white-blue. Its mean brightness is about 0.45, like a frosted pane, so the published
    image/frost weights keep their meaning.
    """
    reach = max(2, round(size * 0.08))
    canvas = size + 2 * reach  # grow on a margin, so needles cross the borders
    mapsize = power_of_two(size)
    density = min(0.08, 4.5 / reach**2)
    draws = rng.uniform(seeds, "frost/nuclei", 1, canvas, canvas)
    nuclei = torch.where(draws < density, 0.6 + 0.4 * draws / density, 0 * draws)
    angle = (
        math.pi * plasma_fractal(seeds, mapsize, 2.5, "frost/orientation")[:, None, :size, :size]
    )
    angle = pad(pad(angle, reach, reach, 2, "edge"), reach, reach, 3, "edge")
    base = rng.uniform(seeds, "frost/base", 1)[:, 0].double() * math.pi
    needles = torch.zeros_like(nuclei)
    total = torch.zeros_like(nuclei)
    for k in range(FROST_ORIENTATIONS):
        theta = base + k * math.pi / FROST_ORIENTATIONS
        streak = torch.zeros_like(nuclei)
        for step in range(-reach, reach + 1):
            dy = torch.round(step * torch.sin(theta)).long()
            dx = torch.round(step * torch.cos(theta)).long()
            fade = 1 - abs(step) / (reach + 1)
            streak = torch.maximum(streak, fade * shift_edge(nuclei, dy, dx))
        weight = torch.exp(3 * torch.cos(2 * (angle - theta[:, None, None, None]))).float()
        needles, total = needles + weight * streak, total + weight
    needles = (needles / total)[:, :, reach : reach + size, reach : reach + size]
    needles = needles / needles.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
    needles = needles + 0.6 * gaussian_filter(needles, size / 150)  # the glow of ice
    growth = plasma_fractal(seeds, mapsize, 2.0, "frost/growth")[:, None, :size, :size].float()
    layer = (0.15 + 0.3 * growth + 0.9 * needles * (0.3 + growth)).clamp(0, 1)
    tint = torch.tensor(FROST_TINT, device=seeds.device).view(1, 3, 1, 1)
    return layer * tint
