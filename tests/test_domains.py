import json

import numpy as np
import pytest

from benchmark.data import domains
from benchmark.data.domains import build_domain, domain_path, load_domain
from benchmark.data.splits import split_indices
from benchmark.suite import families


@pytest.mark.parametrize("name", ["mnist", "optdigits", "mnistm", "syndigits"])
def test_rebuild_gives_identical_bytes(name, tmp_path):
    load_domain(name)  # built into the session's cache (most tests share it) unless it is there
    first = json.loads((domain_path(name) / "manifest.json").read_text())
    second = json.loads((build_domain(name, tmp_path) / "manifest.json").read_text())
    assert first["sha256"] == second["sha256"]
    assert sum(first["counts"].values()) == families.domain_info(name).entry.images


@pytest.mark.parametrize("name", ["mnist", "syndigits"])
def test_splits_are_disjoint_stratified_80_20(name):
    splits = load_domain(name)
    train = {bytes(img) for img in splits.train_images}
    assert not any(bytes(img) in train for img in splits.test_images)
    for label in range(10):
        n_train = int((splits.train_labels == label).sum())
        n_test = int((splits.test_labels == label).sum())
        assert abs(n_test / (n_train + n_test) - 0.2) < 0.01
    assert splits.train_images.shape[1:] == (32, 32, 3)
    assert splits.train_images.dtype == np.uint8


def test_split_indices_are_a_partition_fixed_by_group():
    labels = np.repeat(np.arange(4), 10)
    train, test = split_indices(labels, "group")
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(40))
    assert len(test) == 8
    again_train, _ = split_indices(labels, "group")
    other_train, _ = split_indices(labels, "other")
    assert np.array_equal(train, again_train) and not np.array_equal(train, other_train)


def test_mnistm_shares_mnist_split():
    mnist, mnistm = load_domain("mnist"), load_domain("mnistm")
    assert np.array_equal(mnist.test_labels, mnistm.test_labels)


def test_cache_is_reused_then_rebuilt_when_bytes_change(tmp_path, monkeypatch):
    build_domain("optdigits", tmp_path)
    calls = []
    real_build = domains._build
    monkeypatch.setattr(domains, "_build", lambda info: calls.append(info) or real_build(info))
    load_domain("optdigits", tmp_path)
    assert calls == []
    labels = domain_path("optdigits", tmp_path) / "test_labels.npy"
    labels.write_bytes(labels.read_bytes()[:-8] + b"\x00" * 8)
    load_domain("optdigits", tmp_path)
    assert len(calls) == 1


def test_robustness_sets_are_seeded_class_stratified_prefixes():
    from benchmark.data.splits import stratified_order

    sorted_labels = np.repeat(np.arange(10), 100)  # a test split ordered by label, as mnistm's
    order = stratified_order(sorted_labels, "mnistm/robustness-sample")
    assert sorted(order) == list(range(1000))
    for count in (10, 50, 500):
        per_class = np.bincount(sorted_labels[order[:count]], minlength=10)
        assert per_class.max() - per_class.min() <= 1, (count, per_class)
    uneven = np.repeat([0, 1, 2], [10, 30, 60])
    share = np.bincount(uneven[stratified_order(uneven, "u")[:20]], minlength=3)
    assert np.all(np.abs(share - np.array([2, 6, 12])) <= 1)
    assert np.array_equal(order, stratified_order(sorted_labels, "mnistm/robustness-sample"))
    assert not np.array_equal(order, stratified_order(sorted_labels, "another"))


def test_the_robustness_set_of_a_run_holds_every_class():
    import torch

    from benchmark.data.provider import SplitProvider

    clean, cells = SplitProvider(torch.device("cpu")).corrupted("mnistm", 32, 50, ["contrast"])
    assert np.bincount(clean.labels.numpy(), minlength=10).tolist() == [5] * 10
    assert all(torch.equal(split.labels, clean.labels) for split in cells.values())
