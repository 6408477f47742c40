"""Splits too big for the device: rows of a host array (the cache's memory map), read by
DataLoader worker processes and moved to the device one batch at a time.

A StreamSplit answers the same calls as a DeviceSplit (len, head, labels, take, in_order,
select, host_images) and yields the same uint8 batches in the same order, so a `Stream` draws the
same permutation and augmentation from the same generator: streaming changes the speed of a
run, never its numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.data.settings import data_workers, device_data_budget
from benchmark.data.tensors import DeviceSplit, to_device


class _Rows(Dataset):
    """Item i: the images at rows `groups[i]` as a (B, H, W, 3) uint8 tensor."""

    def __init__(self, images: np.ndarray, groups: list[np.ndarray]) -> None:
        self.images, self.groups = images, groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.images[self.groups[index]]))

    def __reduce__(self) -> tuple:
        """A memory map travels to a worker as its file name, not as its bytes."""
        if isinstance(self.images, np.memmap) and self.images.filename:
            return _reopen, (self.images.filename, self.groups)
        return _Rows, (self.images, self.groups)


def _reopen(filename: str, groups: list[np.ndarray]) -> _Rows:
    return _Rows(np.load(filename, mmap_mode="r"), groups)


class StreamSplit:
    def __init__(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        labels: torch.Tensor,
        device: torch.device,
        size: int,
    ) -> None:
        self.images = images  # (M, H, W, 3) uint8 on the host; this split is `rows` of it
        self.rows = rows
        self.labels = labels  # (N,) int64 on the device
        self.device = device
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def head(self, count: int) -> StreamSplit:
        return StreamSplit(
            self.images, self.rows[:count], self.labels[:count], self.device, self.size
        )

    def select(self, rows: np.ndarray, labels: np.ndarray | None = None) -> StreamSplit:
        """The images at `rows` of this split, with `labels` instead of their own if given."""
        rows = np.asarray(rows, dtype=np.int64)
        index = torch.from_numpy(rows).to(self.labels.device)
        new = self.labels[index] if labels is None else torch.from_numpy(labels).long()
        return StreamSplit(
            self.images, self.rows[rows], new.to(self.labels.device), self.device, self.size
        )

    def _load(self, groups: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(
            _Rows(self.images, [self.rows[group] for group in groups]),
            batch_size=None,
            num_workers=data_workers(),
            pin_memory=self.device.type == "cuda",
        )
        for group, images in zip(groups, loader, strict=True):
            index = torch.from_numpy(group).to(self.labels.device)
            yield to_device(images, self.device, self.size), self.labels[index]

    def take(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = order.cpu().numpy()
        starts = range(0, len(order) - batch_size + 1, batch_size)
        return self._load([order[start : start + batch_size] for start in starts])

    def in_order(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ranges = [
            np.arange(s, min(s + batch_size, len(self))) for s in range(0, len(self), batch_size)
        ]
        return self._load(ranges)

    def host_images(self) -> np.ndarray:
        return (
            to_device(self.images[self.rows], torch.device("cpu"), self.size)
            .permute(0, 2, 3, 1)
            .numpy()
        )


def make_split(
    images: np.ndarray,
    labels: np.ndarray,
    device: torch.device,
    size: int,
    rows: np.ndarray | None = None,
) -> DeviceSplit | StreamSplit:
    """`rows` of a domain's images (all by default) on the device, or streamed from the host
    when their bytes at `size` px exceed the device data budget (XDKD_DEVICE_DATA_GB)."""
    count = len(labels) if rows is None else len(rows)
    if count * size * size * 3 > device_data_budget():
        rows = np.arange(len(labels)) if rows is None else rows
        return StreamSplit(
            images, rows, torch.from_numpy(labels[rows]).long().to(device), device, size
        )
    if rows is not None:
        images, labels = images[rows], labels[rows]
    return DeviceSplit.from_numpy(images, labels, device, size)
