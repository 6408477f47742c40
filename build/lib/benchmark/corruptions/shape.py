"""MNIST-C's shape corruptions (Mu & Gilmer 2019), each at its one published severity.

Ported from the released MNIST-C code on its 28 px grid: positions scale with the image
size (size / 28); pixel sizes (line half-width 2.3, zigzag step 2, shift 3) are kept for
images up to 64 px, whose digits are MNIST-sized, and scaled by 8 for 224 px ones. On colour
images a line is added to every channel (a white stroke, as on MNIST's black), and the
affine warps fill with black, as skimage's warp does.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.feature import canny

from benchmark.corruptions import rng
from benchmark.corruptions.ops import pixel_grid, sample_bilinear
from benchmark.corruptions.registry import Levels, register

MNIST_SIZE = 28


def _signs(seeds: torch.Tensor, stream: str, count: int) -> torch.Tensor:
    """np.random.choice([-1, 1]) per image."""
    return torch.where(rng.uniform(seeds, stream, count) < 0.5, -1.0, 1.0)


def _warp(x: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """skimage.transform.warp with an inverse map that fixes the centre: output (col, row)
    reads input matrix @ ((col, row) - centre) + centre + shift, bilinear, zero outside."""
    n, size = len(x), x.shape[-1]
    centre = (size - 1) / 2
    ys, xs = pixel_grid(n, size, size, x.device)
    u, v = xs - centre, ys - centre
    m = matrix[:, :, :, None, None]
    source_x = m[:, 0, 0] * u + m[:, 0, 1] * v + centre + shift[:, 0, None, None]
    source_y = m[:, 1, 0] * u + m[:, 1, 1] * v + centre + shift[:, 1, None, None]
    return sample_bilinear(x, source_y, source_x, "constant")


def _stack(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)


@register("shear", "shape", Levels(small=(0.4,), large=(0.4,)))
def shear(x: torch.Tensor, angle: float, seeds: torch.Tensor) -> torch.Tensor:
    """Shear by 0.4 rad (MNIST-C severity 2), random direction; skimage's 2019
    AffineTransform(shear=c) matrix [[1, -sin c], [0, cos c]]."""
    c = angle * _signs(seeds, "shear/sign", 1)[:, 0]
    matrix = _stack(torch.ones_like(c), -torch.sin(c), torch.zeros_like(c), torch.cos(c))
    return _warp(x, matrix, torch.zeros(len(x), 2, device=x.device))


@register("rotate", "shape", Levels(small=(0.4,), large=(0.4,)))
def rotate(x: torch.Tensor, angle: float, seeds: torch.Tensor) -> torch.Tensor:
    """Rotate by 0.4 rad (about 23 degrees, MNIST-C severity 2), random direction."""
    c = angle * _signs(seeds, "rotate/sign", 1)[:, 0]
    matrix = _stack(torch.cos(c), -torch.sin(c), torch.sin(c), torch.cos(c))
    return _warp(x, matrix, torch.zeros(len(x), 2, device=x.device))


@register("scale", "shape", Levels(small=(1 / 0.7,), large=(1 / 0.7,)))
def scale(x: torch.Tensor, factor: float, seeds: torch.Tensor) -> torch.Tensor:
    """Shrink to 70% about the centre (inverse map scale 1 / 0.7, MNIST-C severity 3)."""
    eye = torch.eye(2, device=x.device).expand(len(x), 2, 2)
    return _warp(x, factor * eye, torch.zeros(len(x), 2, device=x.device))


@register("translate", "shape", Levels(small=(3,), large=(24,)))
def translate(x: torch.Tensor, pixels: int, seeds: torch.Tensor) -> torch.Tensor:
    """Shift by `pixels` along both axes, random signs (MNIST-C severity 3: 3 px at 28 px)."""
    eye = torch.eye(2, device=x.device).expand(len(x), 2, 2)
    return _warp(x, eye, pixels * _signs(seeds, "translate/signs", 2))


@register("stripe", "shape", Levels(small=(0.25,), large=(0.25,)))
def stripe(x: torch.Tensor, fraction: float, seeds: torch.Tensor) -> torch.Tensor:
    """Invert the outer quarter on each side (MNIST-C: columns :7 and 21: of 28)."""
    width = round(x.shape[-1] * fraction)
    out = x.clone()
    out[..., :width] = 1 - x[..., :width]
    out[..., x.shape[-1] - width :] = 1 - x[..., x.shape[-1] - width :]
    return out


def _line(
    c0: torch.Tensor, r0: torch.Tensor, c1: torch.Tensor, r1: torch.Tensor, size: int, width: float
) -> torch.Tensor:
    """MNIST-C's `line_from_points`, per image: intensity log(1 - d / width) + 1 at vertical
    distance d from the line, between columns floor(c0) and ceil(c1); (N, 1, S, S)."""
    grid = torch.arange(size, dtype=torch.float64, device=c0.device)
    vertical = c1 == c0
    slope = (r1 - r0) / torch.where(vertical, torch.ones_like(c1), c1 - c0)
    rows_on_line = slope[:, None] * (grid[None, :] - c0[:, None]) + r0[:, None]
    distance = (grid[None, :, None] - rows_on_line[:, None, :]).abs().clamp(0, width - 1e-10)
    field = (torch.log(1 - distance / width) + 1).clamp(0, 1)
    inside = (grid[None, :] >= torch.floor(c0)[:, None]) & (grid[None, :] < torch.ceil(c1)[:, None])
    field = field * (inside & ~vertical[:, None])[:, None, :]
    return field[:, None].float()


@register("dotted_line", "shape", Levels(small=((2, 2.3),), large=((16, 18.4),)))
def dotted_line(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """A line across the image between random rows, every other dash of columns blanked."""
    dash, width = spec
    size = x.shape[-1]
    rows = torch.floor(rng.uniform(seeds, "dotted_line/rows", 2).double() * (size - 1))
    left, right = torch.zeros_like(rows[:, 0]), torch.full_like(rows[:, 0], size - 1.0)
    field = _line(left, rows[:, 0], right, rows[:, 1], size, width)
    blanked = (torch.arange(size, device=x.device) // dash) % 2 == 0
    return x + field * ~blanked


def _zigzag_points(r0: float, r1: float, size: int, step: float) -> np.ndarray:
    """MNIST-C's zigzag vertices (quirks kept) from column 2 to 25 of 28, scaled to `size`."""
    unit = size / MNIST_SIZE
    c0, c1 = 2 * unit, 25 * unit
    theta = np.arctan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / np.cos(theta)
    points, r_i = [(0.0, 0.0)], 0.0
    for i in range(int((length - step) // (2 * step)) + 1):
        r_i = (-1) ** i * step
        points.append(((2 * i + 1) * step, r_i))
    max_c = (2 * step) * (length // (2 * step))
    if length != max_c:
        points.append((length, r_i / (2 * (length - max_c))))
    turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cols, rows = turn @ np.array(points).T
    return np.stack([cols + c0, rows + r0], 1)


@register("zigzag", "shape", Levels(small=((2.0, 2.3),), large=((16.0, 18.4),)))
def zigzag(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """A zigzag stroke (step, line half-width) across the image at a random height and tilt."""
    step, width = spec
    size, unit = x.shape[-1], x.shape[-1] / MNIST_SIZE
    draws = rng.uniform(seeds, "zigzag/rows", 2).double().cpu().numpy()
    starts = np.floor(draws[:, 0] * (size - 1))
    ends = starts + (np.floor(draws[:, 1] * 10) - 5) * unit
    paths = [_zigzag_points(r0, r1, size, step) for r0, r1 in zip(starts, ends, strict=True)]
    longest = max(len(path) for path in paths)
    padded = np.stack([np.concatenate([p, np.repeat(p[-1:], longest - len(p), 0)]) for p in paths])
    points = torch.from_numpy(padded).to(x.device)
    field = torch.zeros_like(x[:, :1])
    for k in range(1, longest):
        a, b = points[:, k - 1], points[:, k]
        field = field + _line(a[:, 0], a[:, 1], b[:, 0], b[:, 1], size, width)
    return x + field


@register("canny_edges", "shape", Levels(small=(1.0,), large=(8.0,)))
def canny_edges(x: torch.Tensor, sigma: float, seeds: torch.Tensor) -> torch.Tensor:
    """The image replaced by its Canny edge map (skimage, on the grey image), white on black."""
    images = x.permute(0, 2, 3, 1).double().cpu().numpy()
    edges = np.stack([canny(rgb2gray(image), sigma=sigma) for image in images])
    return torch.from_numpy(edges).to(x)[:, None].expand(-1, 3, -1, -1).clone()
