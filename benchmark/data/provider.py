"""The splits of a sweep: each (domain, part, size) is loaded and placed once.

Parts: `test`; `train` and `val`, where `val` is a seeded stratified share of the published
train split held out for training-domain validation (DomainBed's rule), and `train` is the
rest. With a validation share of 0 there is no `val` and `train` is the whole train split.
A split goes to the device, unless it is bigger than the device data budget: then it streams
from the cache's memory map (`benchmark.data.streaming`), with the same batches.
"""

from __future__ import annotations

import torch

from benchmark.data.domains import DomainSplits, domain_info, load_domain, stratified_split
from benchmark.data.streaming import StreamSplit, make_split
from benchmark.data.tensors import DeviceSplit

Split = DeviceSplit | StreamSplit


class SplitProvider:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._splits: dict[tuple[str, str, int, float], Split] = {}
        self._domains: dict[tuple[str, int], DomainSplits] = {}
        self._corrupted: dict[tuple, dict[tuple[str, int], Split]] = {}

    def split(self, domain: str, part: str, size: int, validation: float = 0.0) -> Split:
        key = (domain, part, size, validation if part != "test" else 0.0)
        if key not in self._splits:
            if (domain, size) not in self._domains:  # one load (and verification) per domain
                self._domains[domain, size] = load_domain(domain, size=size)
            arrays = self._domains[domain, size]
            if part == "test":
                images, labels, rows = arrays.test_images, arrays.test_labels, None
            else:
                group = domain_info(domain).split_group
                kept, held = stratified_split(
                    arrays.train_labels, f"{group}/validation", validation
                )
                images, labels = arrays.train_images, arrays.train_labels
                rows = held if part == "val" else kept
            self._splits[key] = make_split(images, labels, self.device, size, rows)
        return self._splits[key]

    def corrupted(
        self, domain: str, size: int, count: int, names: list[str]
    ) -> tuple[Split, dict[tuple[str, int], Split]]:
        """The first `count` test images of a domain (at `size`) and their corrupted copies.
        The whole test split is corrupted once into the cache (`benchmark.corruptions.cache`),
        so suites evaluating different counts share one cached set; a streamed test split is
        too big for that, so only its first `count` images are corrupted."""
        from benchmark.corruptions.cache import load_corrupted

        test = self.split(domain, "test", size)
        clean = test if isinstance(test, DeviceSplit) else test.head(count)
        key = (domain, size, tuple(names), len(clean))
        if key not in self._corrupted:
            labels = clean.labels.cpu().numpy()
            cells = load_corrupted(domain, "test", clean.host_images(), names, device=self.device)
            self._corrupted[key] = {
                cell: make_split(array, labels, self.device, size) for cell, array in cells.items()
            }
        first = {cell: split.head(count) for cell, split in self._corrupted[key].items()}
        return clean.head(count), first
