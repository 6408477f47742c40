"""Small domains held on the compute device as uint8 tensors, batched and augmented there.

Decoding and host-to-device copies dominate small-image training; holding a whole split on
the device and drawing batches by index removes both. Every draw takes an explicit
`torch.Generator`, so a batch sequence is a pure function of the run's seed. A split too big
for the device (`benchmark.data.streaming.StreamSplit`) gives the same batches from the host.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.augment import JITTERED, transformed
from benchmark.suite.config import policy_of

if TYPE_CHECKING:
    from benchmark.data.streaming import StreamSplit

MEAN, STD = 0.5, 0.5


def to_device(images: np.ndarray | torch.Tensor, device: torch.device, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 host images -> (N, 3, size, size) uint8 on the device, resized there
    (bilinear) when they are not `size` px already."""
    if isinstance(images, np.ndarray):
        if not images.flags.writeable:  # a read-only memory map: torch wants its own copy
            images = np.array(images)
        images = torch.from_numpy(images)
    tensor = images.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()
    if tensor.shape[-1] != size or tensor.shape[-2] != size:
        resized = F.interpolate(tensor.float(), size=(size, size), mode="bilinear")
        tensor = resized.round().clamp(0, 255).to(torch.uint8)
    return tensor


@dataclass
class DeviceSplit:
    images: torch.Tensor  # (N, 3, H, W) uint8 on the device
    labels: torch.Tensor  # (N,) int64 on the device

    @classmethod
    def from_numpy(
        cls, images: np.ndarray, labels: np.ndarray, device: torch.device, size: int
    ) -> DeviceSplit:
        return cls(to_device(images, device, size), torch.from_numpy(labels).long().to(device))

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int) -> DeviceSplit:
        """The first `count` images (a view, no copy)."""
        return DeviceSplit(self.images[:count], self.labels[:count])

    def select(self, rows: np.ndarray, labels: np.ndarray | None = None) -> DeviceSplit:
        """The images at `rows`, with `labels` instead of their own when given (a task's
        classes renumbered)."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.labels.device)
        new = self.labels[index] if labels is None else torch.from_numpy(labels).long()
        return DeviceSplit(self.images[index], new.to(self.labels.device))

    def take(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 batches of the images at `order`, in turn; a last partial batch is dropped."""
        order = order.to(self.labels.device)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield self.images[index], self.labels[index]

    def in_order(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.images[start : start + batch_size], self.labels[start : start + batch_size]

    def host_images(self) -> np.ndarray:
        """(N, H, W, 3) uint8 on the host."""
        return self.images.permute(0, 2, 3, 1).cpu().numpy()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1]."""
    return (images.float() / 255.0 - MEAN) / STD


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random affine jitter (±10° rotation, ±10% scale and shift) and brightness/contrast
    jitter, drawn per image on the device. No flips: a mirrored digit is another symbol."""
    batch, device = images.shape[0], images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        draw = torch.rand(batch, generator=generator, device=generator.device)
        return (low + (high - low) * draw).to(device)

    angle = uniform(-math.pi / 18, math.pi / 18)
    scale = uniform(0.9, 1.1)
    shift_x, shift_y = uniform(-0.1, 0.1), uniform(-0.1, 0.1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    contrast = uniform(0.8, 1.2).view(-1, 1, 1, 1)
    brightness = uniform(-0.1, 0.1).view(-1, 1, 1, 1)
    mean = warped.mean(dim=(1, 2, 3), keepdim=True)
    return ((warped - mean) * contrast + mean + brightness).clamp(-1, 1)


class Stream:
    """An endless stream of shuffled batches of one split (a new permutation every pass, the
    last partial batch dropped), normalised and augmented on the device under `augmented`,
    a recipe's `augment` (true/false or a policy of `benchmark.data.augment`; mixing, which
    needs the labels' classes, is the training loop's).

    Its position (the current permutation and how many of its batches were taken) is state
    that a checkpoint saves and restores, so a resumed run draws exactly the batches the
    uninterrupted one would have; the draws themselves come from the shared `generator`,
    whose state the checkpoint keeps too."""

    def __init__(
        self,
        split: DeviceSplit | StreamSplit,
        batch_size: int,
        generator: torch.Generator,
        augmented: bool | str,
    ) -> None:
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.generator = generator
        self.policy = policy_of(augmented)
        self.per_pass = len(split) // self.batch_size
        self.order: torch.Tensor | None = None
        self.position = 0
        self._batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _start(self, order: torch.Tensor, position: int) -> None:
        self.order, self.position = order, position
        self._batches = self.split.take(order[position * self.batch_size :], self.batch_size)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batches is None or self.position >= self.per_pass:
            device = self.generator.device
            self._start(torch.randperm(len(self.split), generator=self.generator, device=device), 0)
        images, labels = next(self._batches)
        self.position += 1
        images = normalize(transformed(images, self.policy, self.generator))
        if self.policy in JITTERED:
            images = augment(images, self.generator)
        return images, labels

    def state_dict(self) -> dict:
        return {
            "order": None if self.order is None else self.order.cpu(),
            "position": self.position,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["order"] is not None:
            self._start(state["order"].to(self.generator.device), state["position"])


def ordered_batches(
    split: DeviceSplit | StreamSplit, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The whole split in order, for evaluation."""
    for images, labels in split.in_order(batch_size):
        yield normalize(images), labels
