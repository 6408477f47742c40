"""Digital corruptions of ImageNet-C (Hendrycks & Dietterich, ICLR 2019): contrast, elastic
transform, pixelate and JPEG; saturate is one of its held-out validation corruptions."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from benchmark.corruptions import rng
from benchmark.corruptions.ops import gaussian_filter, pixel_grid, sample_bilinear
from benchmark.corruptions.registry import Levels, register


@register(
    "contrast",
    "digital",
    Levels(small=(0.75, 0.5, 0.4, 0.3, 0.15), large=(0.4, 0.3, 0.2, 0.1, 0.05)),
)
def contrast(x: torch.Tensor, factor: float, seeds: torch.Tensor) -> torch.Tensor:
    """(x - channel mean) * factor + channel mean."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _affine_warp(x: torch.Tensor, jitter: float, seeds: torch.Tensor) -> torch.Tensor:
    """ImageNet-C's random affine: three points around the centre move by up to `jitter`
    pixels (cv2.getAffineTransform), the image is warped (cv2.warpAffine, bilinear,
    BORDER_REFLECT_101)."""
    n, size = len(x), x.shape[-1]
    centre, half = float(size // 2), float(size // 3)
    source = torch.tensor(
        [[centre + half, centre + half], [centre + half, centre - half], [centre - half] * 2],
        device=x.device,
    )
    moved = source + jitter * (2 * rng.uniform(seeds, "elastic/affine", 3, 2) - 1)
    ones = torch.ones(3, 1, device=x.device)
    matrix = torch.linalg.solve(torch.cat([source, ones], 1), moved).transpose(1, 2)
    linear, offset = matrix[:, :, :2], matrix[:, :, 2]
    ys, xs = pixel_grid(n, size, size, x.device)
    target = torch.stack([xs, ys], -1).reshape(n, -1, 2) - offset[:, None, :]
    origin = torch.linalg.solve(linear, target.transpose(1, 2)).transpose(1, 2)
    origin = origin.reshape(n, size, size, 2)
    return sample_bilinear(x, origin[..., 1], origin[..., 0], "reflect101")


IMAGENET_SCALE = 244 / 224  # the published code scales by 244 where 224 was meant
ELASTIC_SMALL = (
    (0, 0, 0.08),
    (0.05, 0.2, 0.07),
    (0.08, 0.06, 0.06),
    (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03),
)
ELASTIC_LARGE = (
    (2, 0.7, 0.1),
    (2, 0.08, 0.2),
    (0.05, 0.01, 0.02),
    (0.07, 0.01, 0.02),
    (0.12, 0.01, 0.02),
)


@register(
    "elastic_transform",
    "digital",
    Levels(
        small=ELASTIC_SMALL,
        large=tuple(tuple(v * IMAGENET_SCALE for v in level) for level in ELASTIC_LARGE),
    ),
)
def elastic_transform(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """(alpha, sigma, affine jitter) as fractions of the image size: a random affine warp,
    then a displacement field of uniform(-1, 1) noise smoothed by a Gaussian of sigma
    (scipy reflect, truncated at 3 sigma) times alpha, sampled bilinearly (map_coordinates
    order 1, mode reflect)."""
    n, size = len(x), x.shape[-1]
    alpha, sigma, jitter = (value * size for value in spec)
    warped = _affine_warp(x, jitter, seeds)
    field = 2 * rng.uniform(seeds, "elastic/field", 2, size, size) - 1
    field = gaussian_filter(field, sigma, mode="symmetric", truncate=3.0) * alpha
    ys, xs = pixel_grid(n, size, size, x.device)
    return sample_bilinear(warped, ys + field[:, 1], xs + field[:, 0], "symmetric")


def _box_taps(in_size: int, out_size: int, device: torch.device) -> tuple:
    """Pillow's BOX resampling coefficients (precompute_coeffs): per output pixel, the input
    pixels whose unit box overlaps its footprint, equally weighted."""
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    index, weight = [], []
    for out in range(out_size):
        centre = (out + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        taps = [(i, (i - centre + 0.5) / max(scale, 1.0)) for i in range(low, high)]
        kept = [i for i, position in taps if -0.5 < position <= 0.5]
        index.append(kept)
        weight.append([1.0 / len(kept)] * len(kept))
    width = max(len(row) for row in index)
    index_t = torch.tensor([row + row[-1:] * (width - len(row)) for row in index], device=device)
    weight_t = torch.tensor([row + [0.0] * (width - len(row)) for row in weight], device=device)
    return index_t, weight_t


def _box_resize_last(x: torch.Tensor, out_size: int) -> torch.Tensor:
    index, weight = _box_taps(x.shape[-1], out_size, x.device)
    out = torch.zeros(*x.shape[:-1], out_size, device=x.device)
    for tap in range(index.shape[1]):
        out = out + weight[:, tap] * x[..., index[:, tap]]
    return torch.floor(out * 255 + 0.5) / 255  # Pillow rounds half up to 8 bits per pass


def box_resize(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """Pillow's Image.resize(..., BOX): horizontal pass, then vertical."""
    wide = _box_resize_last(x, out_size)
    return _box_resize_last(wide.transpose(-1, -2), out_size).transpose(-1, -2)


@register(
    "pixelate",
    "digital",
    Levels(small=(0.95, 0.9, 0.85, 0.75, 0.65), large=(0.6, 0.5, 0.4, 0.3, 0.25)),
)
def pixelate(x: torch.Tensor, fraction: float, seeds: torch.Tensor) -> torch.Tensor:
    """Box-downsample to int(size * fraction) pixels and box-upsample back."""
    size = x.shape[-1]
    return box_resize(box_resize(x, int(size * fraction)), size)


@register(
    "jpeg_compression", "digital", Levels(small=(80, 65, 58, 50, 40), large=(25, 18, 15, 10, 7))
)
def jpeg_compression(x: torch.Tensor, quality: int, seeds: torch.Tensor) -> torch.Tensor:
    """Save and reload as JPEG at the published quality with Pillow, the published call
    (libjpeg, 4:2:0 chroma subsampling), one image at a time on the CPU."""
    decoded = []
    for image in (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(decoded)).to(x.device).permute(0, 3, 1, 2).float() / 255


@register(
    "saturate",
    "validation",
    Levels(
        small=((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
        large=((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    ),
)
def saturate(x: torch.Tensor, spec: tuple, seeds: torch.Tensor) -> torch.Tensor:
    """HSV saturation * scale + offset, clipped (skimage's HSV round trip in closed form:
    with hue and value fixed, each channel's distance below V scales with S; grey pixels
    have hue 0 in skimage, so an offset turns them red)."""
    scale, offset = spec
    value = x.amax(1, keepdim=True)
    chroma = value - x.amin(1, keepdim=True)
    sat = torch.where(value > 0, chroma / value.clamp(min=1e-12), torch.zeros_like(value))
    new_sat = (sat * scale + offset).clamp(0, 1)
    red = torch.tensor([0.0, 1.0, 1.0], device=x.device).view(1, 3, 1, 1)
    grey = value - value * new_sat * red
    colour = value - (value - x) * new_sat / sat.clamp(min=1e-12)
    return torch.where(chroma > 0, colour, grey)
