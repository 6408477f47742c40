"""The corruption registry and its one door, `apply_corruption`.

Each corruption is a small function of (images in [0, 1], its parameter, per-image seeds)
registered with its group and its published parameters per severity (`Levels`). Hendrycks &
Dietterich (ICLR 2019) published two parameter sets: CIFAR-10-C's for 32 px images and
ImageNet-C's for 224 px ones; images up to 64 px get the first, larger ones the second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.registry import Registry

SMALL_MAX = 64  # images up to this size use CIFAR-10-C's parameters, larger ones ImageNet-C's
GROUPS = ("noise", "blur", "weather", "digital", "validation", "shape")
COUNTED_GROUPS = ("noise", "blur", "weather", "digital")  # the 15 in mCE and mCA

CorruptionFn = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Levels:
    """A corruption's parameter per severity: `small` for <= 64 px images, `large` above.

    A single level (MNIST-C's shape corruptions, Mu & Gilmer 2019) is one fixed severity:
    every severity argument gets it.
    """

    small: tuple[Any, ...]
    large: tuple[Any, ...]

    def at(self, size: int, severity: int) -> Any:
        values = self.small if size <= SMALL_MAX else self.large
        return values[0] if len(values) == 1 else values[severity - 1]


@dataclass(frozen=True)
class Corruption:
    name: str
    fn: CorruptionFn
    group: str
    levels: Levels

    @property
    def counted(self) -> bool:
        """Whether it counts in the benchmark averages (the 15 of ImageNet-C do)."""
        return self.group in COUNTED_GROUPS

    @property
    def severities(self) -> tuple[int, ...]:
        """The distinct severities: 1..5, or just 1 for a fixed-severity corruption."""
        return tuple(range(1, len(self.levels.small) + 1))


CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def register(name: str, group: str, levels: Levels) -> Callable[[CorruptionFn], CorruptionFn]:
    if group not in GROUPS:
        raise ValueError(f"corruption group '{group}' is not one of {GROUPS}")

    def decorate(fn: CorruptionFn) -> CorruptionFn:
        CORRUPTIONS.register(name)(Corruption(name, fn, group, levels))
        return fn

    return decorate


def corruption_names(*groups: str) -> list[str]:
    """Registered names in group order (noise, blur, weather, digital, validation, shape),
    alphabetical within a group; all groups when none is given."""
    wanted = groups or GROUPS
    entries = [CORRUPTIONS.get(name) for name in CORRUPTIONS.names()]
    chosen = [entry for entry in entries if entry.group in wanted]
    return [e.name for e in sorted(chosen, key=lambda e: (GROUPS.index(e.group), e.name))]


def benchmark_names() -> list[str]:
    """The 15 corruptions that count in mCE / mCA."""
    return corruption_names(*COUNTED_GROUPS)


def apply_corruption(
    images: torch.Tensor, name: str, severity: int, seeds: torch.Tensor
) -> torch.Tensor:
    """Corrupt uint8 (N, 3, H, W) square images at `severity` (1..5), on their device.

    Image i's output is a pure function of (image i, name, severity, seeds[i]): draws come
    from counter-based streams keyed by the seed (no global state), and every operation acts
    on each image alone, so batch composition and order do not matter. Results are rounded
    to uint8 (the published scripts truncated with np.uint8, and ImageNet-C's release was
    further re-encoded as JPEG at quality 85; neither is reproduced).
    """
    entry = CORRUPTIONS.get(name)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {images.shape}")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square images, got {images.shape[2]}x{images.shape[3]}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1..5, got {severity}")
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"expected one seed per image, got {tuple(seeds.shape)} seeds")
    if len(images) == 0:
        return images.clone()
    parameter = entry.levels.at(images.shape[-1], severity)
    out = entry.fn(images.float() / 255.0, parameter, seeds.to(images.device).long())
    return (out.clamp(0, 1) * 255.0).round().to(torch.uint8)
