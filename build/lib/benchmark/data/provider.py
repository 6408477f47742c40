"""The splits of a sweep: each (domain, part, size) is loaded and placed once.

Parts: `test`; `train` and `val`, where `val` is a seeded stratified share of the published
train split held out for validation (DomainBed's rule), and `train` is the rest. With a
validation share of 0 there is no `val` and `train` is the whole train split. A split goes to
the device, unless it is bigger than the device data budget: then it streams from the cache's
memory map (`benchmark.data.streaming`), with the same batches.

Robustness is measured on a seeded, class-stratified sample of a test split
(`stratified_order`): the same images for every run of a domain and size, and a smaller
sample is the start of a larger one, so suites evaluating different counts share one cache.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.data.domains import load_domain
from benchmark.data.splits import DomainSplits, stratified_order, stratified_split
from benchmark.data.streaming import StreamSplit, make_split
from benchmark.data.tensors import DeviceSplit
from benchmark.suite.families import domain_info

Split = DeviceSplit | StreamSplit
ROBUSTNESS_SAMPLE = "robustness-sample"  # names the seed of the stratified test sample


class SplitProvider:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._splits: dict[tuple[str, str, int, float], Split] = {}
        self._domains: dict[tuple[str, int], DomainSplits] = {}
        self._corrupted: dict[tuple, dict[tuple[str, int], Split]] = {}

    def arrays(self, domain: str, size: int) -> DomainSplits:
        """The domain's cached arrays at `size`, loaded (and verified) once."""
        if (domain, size) not in self._domains:
            self._domains[domain, size] = load_domain(domain, size=size)
        return self._domains[domain, size]

    def rows(self, domain: str, part: str, size: int, validation: float = 0.0):
        """(images, labels, rows) of a part: the host arrays it is cut from and its rows
        (None: all of them)."""
        arrays = self.arrays(domain, size)
        if part == "test":
            return arrays.test_images, arrays.test_labels, None
        group = domain_info(domain).split_group
        kept, held = stratified_split(arrays.train_labels, f"{group}/validation", validation)
        return arrays.train_images, arrays.train_labels, held if part == "val" else kept

    def labels(self, domain: str, part: str, size: int, validation: float = 0.0) -> np.ndarray:
        """The part's labels on the host, in the split's order."""
        _, labels, rows = self.rows(domain, part, size, validation)
        return labels if rows is None else labels[rows]

    def split(self, domain: str, part: str, size: int, validation: float = 0.0) -> Split:
        key = (domain, part, size, validation if part != "test" else 0.0)
        if key not in self._splits:
            images, labels, rows = self.rows(domain, part, size, validation)
            self._splits[key] = make_split(images, labels, self.device, size, rows)
        return self._splits[key]

    def robustness_sample(self, domain: str, size: int) -> np.ndarray:
        """Test indices in the seeded class-stratified order robustness sets are drawn in."""
        labels = self.arrays(domain, size).test_labels
        return stratified_order(labels, f"{domain_info(domain).split_group}/{ROBUSTNESS_SAMPLE}")

    def corrupted(
        self,
        domain: str,
        size: int,
        count: int,
        names: list[str],
        keep: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> tuple[Split, dict[tuple[str, int], Split]]:
        """The robustness set of a domain's test split: the first `count` images of its
        stratified order (only those whose test index is in `keep`, when given), and their
        corrupted copies; `labels` maps each test index to the label the run scores (a task's
        class numbering). A test split on the device is corrupted whole, once, into the cache
        (`benchmark.corruptions.cache`), in that order; a streamed one only its sample."""
        from benchmark.corruptions.cache import load_corrupted

        test = self.split(domain, "test", size)
        order = self.robustness_sample(domain, size)
        wanted = np.flatnonzero(np.isin(order, keep)) if keep is not None else np.arange(len(order))
        wanted = wanted[:count]
        rows = order[wanted]
        own = self.arrays(domain, size).test_labels if labels is None else labels
        clean = test.select(rows, own[rows])
        if isinstance(test, DeviceSplit):
            corrupted_rows, positions = order, wanted
        else:
            corrupted_rows, positions = rows, np.arange(len(rows))
        key = (domain, size, tuple(names), len(corrupted_rows))
        if key not in self._corrupted:
            images = test.select(corrupted_rows).host_images()
            cells = load_corrupted(domain, "test", images, corrupted_rows, names, self.device)
            cell_labels = self.arrays(domain, size).test_labels[corrupted_rows]
            self._corrupted[key] = {
                cell: make_split(array, cell_labels, self.device, size)
                for cell, array in cells.items()
            }
        return clean, {
            cell: split.select(positions, own[rows]) for cell, split in self._corrupted[key].items()
        }
