"""Sample grids, so a person can look at a domain before trusting numbers made on it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_grid(
    images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], title: str, path: Path
) -> None:
    """A labelled grid of (N, H, W, 3) uint8 images, 8 per row."""
    columns = 8
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.25 + 0.4))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, image, label in zip(np.atleast_1d(axes).ravel(), images, labels, strict=False):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(classes[int(label)], fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def class_balanced_sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of `count` images cycling through the classes, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return np.array(chosen, dtype=np.int64)
