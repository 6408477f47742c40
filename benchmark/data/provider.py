"""Device-resident splits for a sweep: each (domain, part, size) is loaded and moved once.

Parts: `test`; `train` and `val`, where `val` is a seeded stratified share of the published
train split held out for training-domain validation (DomainBed's rule), and `train` is the
rest. With a validation share of 0 there is no `val` and `train` is the whole train split.
"""

from __future__ import annotations

import torch

from benchmark.data.domains import domain_info, load_domain, stratified_split
from benchmark.data.tensors import DeviceSplit


class SplitProvider:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._splits: dict[tuple[str, str, int, float], DeviceSplit] = {}
        self._corrupted: dict[tuple, dict[tuple[str, int], DeviceSplit]] = {}

    def split(self, domain: str, part: str, size: int, validation: float = 0.0) -> DeviceSplit:
        key = (domain, part, size, validation if part != "test" else 0.0)
        if key not in self._splits:
            arrays = load_domain(domain)
            if part == "test":
                images, labels = arrays.test_images, arrays.test_labels
            else:
                group = domain_info(domain).entry.split_group or domain
                kept, held = stratified_split(
                    arrays.train_labels, f"{group}/validation", validation
                )
                index = held if part == "val" else kept
                images, labels = arrays.train_images[index], arrays.train_labels[index]
            self._splits[key] = DeviceSplit.from_numpy(images, labels, self.device, size)
        return self._splits[key]

    def corrupted(
        self, domain: str, size: int, count: int, names: list[str]
    ) -> tuple[DeviceSplit, dict[tuple[str, int], DeviceSplit]]:
        """The first `count` test images of a domain (at `size`) and their corrupted copies.
        The whole test split is corrupted once into the cache (`benchmark.corruptions.cache`),
        so suites evaluating different counts share one cached set."""
        from benchmark.corruptions.cache import load_corrupted

        test = self.split(domain, "test", size)
        key = (domain, size, tuple(names))
        if key not in self._corrupted:
            images = test.images.permute(0, 2, 3, 1).cpu().numpy()
            cells = load_corrupted(domain, "test", images, names, device=self.device)
            labels = test.labels.cpu().numpy()
            self._corrupted[key] = {
                cell: DeviceSplit.from_numpy(array, labels, self.device, size)
                for cell, array in cells.items()
            }
        first = {cell: split.head(count) for cell, split in self._corrupted[key].items()}
        return test.head(count), first
