"""Image operations shared by the corruptions, on (N, C, H, W) float tensors.

They reproduce the library calls of Hendrycks & Dietterich's generation code (scipy/skimage
Gaussian filters, OpenCV filter2D and warpAffine, scipy zoom and map_coordinates, ImageMagick's
motion blur) in torch, so the corruptions run batched on any device. Every operation acts
on each image alone, and filters never let a backend's batch-size-dependent algorithm choice
reach the result (see `_correlate`), so an image's output is bit-identical in any batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Border modes: "reflect101" (OpenCV's default, d c b | a b c d), "symmetric" (scipy/skimage
# "reflect", c b a | a b c d), "edge" (scipy "nearest", a a a | a b c d); `sample_bilinear`
# also takes "constant" (zero outside).


def border_index(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Map integer coordinates anywhere onto 0..size-1 with a border mode."""
    if mode == "edge" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "reflect101":
        period = 2 * (size - 1)
        index = index.remainder(period)
        return torch.where(index >= size, period - index, index)
    if mode == "symmetric":
        index = index.remainder(2 * size)
        return torch.where(index >= size, 2 * size - 1 - index, index)
    raise ValueError(f"unknown border mode '{mode}'")


def pad(x: torch.Tensor, before: int, after: int, dim: int, mode: str) -> torch.Tensor:
    size = x.shape[dim]
    index = torch.arange(-before, size + after, device=x.device)
    return x.index_select(dim, border_index(index, size, mode))


MAX_SHIFTED_TAPS = 64  # kernels with more non-zero taps run as per-image convolutions


def _correlate(padded: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid correlation of every channel with one 2-D kernel.

    Small kernels run as a weighted sum of shifted views, elementwise and so bit-identical
    for an image whatever the batch; larger ones run one image per conv2d call, so a
    backend's batch-size-dependent algorithm choice cannot reach the result either.
    """
    kh, kw = kernel.shape
    height, width = padded.shape[-2] - kh + 1, padded.shape[-1] - kw + 1
    taps = kernel.nonzero().tolist()
    if len(taps) > MAX_SHIFTED_TAPS:
        channels = padded.shape[1]
        weight = kernel.to(padded)[None, None].expand(channels, 1, -1, -1)
        return torch.cat([F.conv2d(image[None], weight, groups=channels) for image in padded])
    out = torch.zeros(*padded.shape[:-2], height, width, dtype=padded.dtype, device=padded.device)
    for i, j in taps:
        out = out + float(kernel[i, j]) * padded[..., i : i + height, j : j + width]
    return out


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """OpenCV's filter2D (correlation, kernel centred) with the given border mode."""
    kh, kw = kernel.shape
    x = pad(pad(x, kh // 2, (kh - 1) // 2, 2, mode), kw // 2, (kw - 1) // 2, 3, mode)
    return _correlate(x, kernel)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian: radius int(truncate * sigma + 0.5), normalised."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else (offsets == 0).double()
    return weights / weights.sum()


def gaussian_filter(
    x: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0
) -> torch.Tensor:
    """skimage.filters.gaussian over H and W only (channel_axis set); default mode "nearest"."""
    kernel = gaussian_kernel(sigma, truncate)
    if len(kernel) == 1:
        return x
    radius = len(kernel) // 2
    rows = _correlate(pad(x, radius, radius, 2, mode), kernel[:, None])
    return _correlate(pad(rows, radius, radius, 3, mode), kernel[None, :])


def sample_bilinear(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear samples of (N, C, H, W) images at pixel coordinates ys, xs (N, H', W');
    mode "constant" reads 0 outside the image (skimage.transform.warp's default)."""
    n, channels, height, width = x.shape
    y0, x0 = ys.floor(), xs.floor()
    wy, wx = (ys - y0)[:, None], (xs - x0)[:, None]
    y0, x0 = y0.long(), x0.long()
    flat = x.reshape(n, channels, height * width)

    def tap(dy: int, dx: int) -> torch.Tensor:
        rows, cols = y0 + dy, x0 + dx
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        border = "edge" if mode == "constant" else mode
        rows, cols = border_index(rows, height, border), border_index(cols, width, border)
        index = (rows * width + cols).reshape(n, 1, -1).expand(-1, channels, -1)
        values = flat.gather(2, index).reshape(n, channels, *ys.shape[1:])
        return values * inside[:, None] if mode == "constant" else values

    top = tap(0, 0) * (1 - wx) + tap(0, 1) * wx
    bottom = tap(1, 0) * (1 - wx) + tap(1, 1) * wx
    return top * (1 - wy) + bottom * wy


def pixel_grid(
    n: int, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column coordinates (N, H, W) of every pixel."""
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return grid_y.expand(n, -1, -1), grid_x.expand(n, -1, -1)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """ImageNet-C's clipped_zoom: crop the centre ceil(H / factor), zoom it back up with
    scipy.ndimage.zoom(order=1) (= bilinear, corners aligned), and trim to H x H."""
    size = x.shape[-1]
    crop = int(math.ceil(size / factor))
    top = (size - crop) // 2
    zoomed_size = int(round(crop * factor))
    patch = x[..., top : top + crop, top : top + crop]
    zoomed = F.interpolate(
        patch, size=(zoomed_size, zoomed_size), mode="bilinear", align_corners=True
    )
    trim = (zoomed_size - size) // 2
    return zoomed[..., trim : trim + size, trim : trim + size]


def shift_edge(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[n, :, y, x] = x[n, :, y - dy[n], x - dx[n]], edges repeated (per-image shifts)."""
    n, channels, height, width = x.shape
    rows = (torch.arange(height, device=x.device)[None] - dy[:, None]).clamp(0, height - 1)
    cols = (torch.arange(width, device=x.device)[None] - dx[:, None]).clamp(0, width - 1)
    index = (rows[:, :, None] * width + cols[:, None, :]).reshape(n, 1, -1)
    flat = x.reshape(n, channels, -1).gather(2, index.expand(-1, channels, -1))
    return flat.reshape(x.shape)


def motion_blur(
    x: torch.Tensor, radius: float, sigma: float, degrees: torch.Tensor
) -> torch.Tensor:
    """ImageMagick's MotionBlurImage, as ImageNet-C calls it through Wand: a one-sided
    Gaussian trail of 2*ceil(radius)+1 taps along the angle `degrees` (one per image)."""
    width = 2 * math.ceil(radius) + 1
    taps = torch.arange(width, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).tolist()
    angle = torch.deg2rad(degrees.double())
    out = torch.zeros_like(x)
    for i, weight in enumerate(kernel):
        dy = -torch.ceil(i * torch.sin(angle) - 0.5).long()
        dx = -torch.ceil(i * torch.cos(angle) - 0.5).long()
        out = out + weight * shift_edge(x, dy, dx)
    return out


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's RGB2GRAY luma, (N, 1, H, W)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
