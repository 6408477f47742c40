"""Perturbation-robustness corruptions: ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich,
ICLR 2019) and MNIST-C's shape corruptions (Mu & Gilmer 2019), seeded per image.

One door: `apply_corruption(images, name, severity, seeds)`; `load_corrupted` gives cached
corrupted test sets, `grid.save_corruption_grid` a picture of them. Importing this package
fills the registry; `corruption_names()` lists it in group order, `benchmark_names()` gives
the 15 that count in mCE / mCA.
"""

from benchmark.corruptions import blur, digital, noise, shape, spatter, weather  # noqa: F401
from benchmark.corruptions.cache import load_corrupted
from benchmark.corruptions.registry import (
    CORRUPTIONS,
    Corruption,
    Levels,
    apply_corruption,
    benchmark_names,
    corruption_names,
)

__all__ = [
    "CORRUPTIONS",
    "Corruption",
    "Levels",
    "apply_corruption",
    "benchmark_names",
    "corruption_names",
    "load_corrupted",
]
