"""A picture of every corruption at every severity on one image, so a person can check each
against its published definition (Hendrycks & Dietterich ICLR 2019; Mu & Gilmer 2019)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmark.corruptions.registry import CORRUPTIONS, apply_corruption, corruption_names  # noqa: E402

SEVERITIES = (1, 2, 3, 4, 5)


def save_corruption_grid(image: np.ndarray, path: Path, title: str, seed: int = 0) -> None:
    """Rows: every registered corruption in group order; columns: clean, severities 1..5.
    A fixed-severity (MNIST-C) corruption fills only its first column. `image` is one
    (H, W, 3) uint8 array."""
    names = corruption_names()
    clean = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    seeds = torch.tensor([seed])
    height = 1.15 * len(names) + 0.6
    figure, axes = plt.subplots(len(names), 1 + len(SEVERITIES), figsize=(7.2, height))
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        axis.axis("off")
    for row, name in enumerate(names):
        entry = CORRUPTIONS.get(name)
        axes[row, 0].imshow(image, interpolation="nearest")
        axes[row, 0].axis("on")
        axes[row, 0].set_ylabel(
            f"{name}\n({entry.group})", fontsize=7, rotation=0, ha="right", va="center"
        )
        for severity in entry.severities:
            corrupted = apply_corruption(clean, name, severity, seeds)[0].permute(1, 2, 0)
            axes[row, severity].imshow(corrupted.numpy(), interpolation="nearest")
    axes[0, 0].set_title("clean", fontsize=8)
    for severity in SEVERITIES:
        axes[0, severity].set_title(f"severity {severity}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
