"""A split over the device data budget streams from the host with the very same batches."""

from __future__ import annotations

import itertools
import multiprocessing

import pytest
import torch
from dataset_writers import use_fixtures

from benchmark.data.provider import SplitProvider
from benchmark.data.settings import data_workers
from benchmark.data.streaming import StreamSplit
from benchmark.data.tensors import DeviceSplit, Stream, ordered_batches

CPU = torch.device("cpu")


@pytest.fixture
def root(tmp_path, monkeypatch):
    return use_fixtures(tmp_path, monkeypatch)


def both(monkeypatch, domain: str, part: str, size: int, workers: str):
    """The same split from a provider with the default budget and from one with none."""
    monkeypatch.setenv("XDKD_DATA_WORKERS", workers)
    on_device = SplitProvider(CPU).split(domain, part, size, 0.25)
    monkeypatch.setenv("XDKD_DEVICE_DATA_GB", "0")
    streamed = SplitProvider(CPU).split(domain, part, size, 0.25)
    monkeypatch.delenv("XDKD_DEVICE_DATA_GB")
    assert isinstance(on_device, DeviceSplit) and isinstance(streamed, StreamSplit)
    return on_device, streamed


def assert_same(first, second) -> None:
    first, second = list(first), list(second)
    assert len(first) == len(second) > 0
    for (images_a, labels_a), (images_b, labels_b) in zip(first, second, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


@pytest.mark.parametrize(
    ("domain", "size", "workers"),
    [("mnistm_full", 28, "2"), ("fxnet_clipart", 16, "0"), ("optdigits", 40, "0")],
)
def test_streamed_batches_equal_device_batches(root, monkeypatch, domain, size, workers):
    """Published domains at their cached size, and an embedded one resized on the fly."""
    on_device, streamed = both(monkeypatch, domain, "train", size, workers)
    assert len(on_device) == len(streamed)
    assert torch.equal(on_device.labels, streamed.labels)
    for augmented in (False, True):
        draws = [torch.Generator().manual_seed(7) for _ in range(2)]
        stream_a = itertools.islice(Stream(on_device, 4, draws[0], augmented), 9)  # > 1 pass
        stream_b = itertools.islice(Stream(streamed, 4, draws[1], augmented), 9)
        assert_same(stream_a, stream_b)
        assert torch.equal(draws[0].get_state(), draws[1].get_state())
    assert_same(ordered_batches(on_device, 3), ordered_batches(streamed, 3))
    assert_same(ordered_batches(on_device.head(5), 2), ordered_batches(streamed.head(5), 2))
    assert (on_device.host_images() == streamed.host_images()).all()


def test_corrupted_test_sets_of_a_streamed_domain(root, monkeypatch):
    monkeypatch.setenv("XDKD_DATA_WORKERS", "0")
    clean_a, cells_a = SplitProvider(CPU).corrupted("svhn", 32, 6, ["gaussian_noise"])
    monkeypatch.setenv("XDKD_DEVICE_DATA_GB", "0")
    clean_b, cells_b = SplitProvider(CPU).corrupted("svhn", 32, 6, ["gaussian_noise"])
    assert isinstance(clean_b, StreamSplit) and len(clean_b) == 6
    assert_same(ordered_batches(clean_a, 4), ordered_batches(clean_b, 4))
    for cell in cells_a:
        assert_same(ordered_batches(cells_a[cell], 4), ordered_batches(cells_b[cell], 4))


def _report_workers(queue) -> None:
    queue.put(data_workers())


def test_a_daemonic_sweep_worker_decodes_and_streams_in_process(monkeypatch):
    """A sweep's worker processes are daemonic, and a daemon may not start processes."""
    monkeypatch.setenv("XDKD_DATA_WORKERS", "3")
    assert data_workers() == 3
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    worker = context.Process(target=_report_workers, args=(queue,), daemon=True)
    worker.start()
    assert queue.get(timeout=30) == 0
    worker.join()
