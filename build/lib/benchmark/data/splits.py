"""A domain's train and test split: in memory as every cache stores it, and drawn (seeded,
stratified) where a dataset has no official split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.seeding import name_seed

SPLIT_FILES = ("train_images", "train_labels", "test_images", "test_labels")
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DomainSplits:
    """A domain's train and test split: images (N, H, W, 3) uint8, labels (N,) int64."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def stratified_split(
    labels: np.ndarray, seed_name: str, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices: `share` of every class held out, drawn with a seed
    named by `seed_name` alone."""
    rng = np.random.default_rng(name_seed(seed_name))
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(len(members) * share))
        held.append(members[:count])
        kept.append(members[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_order(labels: np.ndarray, seed_name: str) -> np.ndarray:
    """A seeded ordering of all indices whose every prefix is a class-stratified sample: the
    k-th member (in a seeded shuffle) of a class of n images sits at (k + 1/2) / n, and the
    indices are sorted by that position. The first m then hold each class within one image
    of its share m * n_c / N, and a smaller sample is the prefix of a larger one."""
    rng = np.random.default_rng(name_seed(seed_name))
    position = np.empty(len(labels))
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    tie_break = rng.permutation(len(labels))  # classes at equal positions: a seeded order
    return np.lexsort((tie_break, position))


def split_indices(labels: np.ndarray, group: str) -> tuple[np.ndarray, np.ndarray]:
    """The published split: (train, test), TEST_FRACTION of every class in test."""
    return stratified_split(labels, group, TEST_FRACTION)
