"""The cache of published domains: decoded once, memory-mapped after, verified, rebuilt when
damaged, built once under concurrency; and the bad-image policy (skip or stop)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import numpy as np
import pytest
from dataset_writers import use_fixtures

from benchmark.data import cache, images
from benchmark.data.cache import published_path
from benchmark.data.domains import load_domain
from benchmark.errors import XdkdError
from benchmark.files import cache_dir

AMAZON = "fxoffice_amazon"


@pytest.fixture
def root(tmp_path, monkeypatch):
    return use_fixtures(tmp_path, monkeypatch)


def bad_file(root) -> str:
    return f"{root}/fxoffice/amazon/images/mug/frame_0099.jpg"


def test_a_second_load_reads_only_the_cache(root, monkeypatch):
    first = load_domain(AMAZON, size=16)
    shutil.rmtree(root / "fxoffice")  # the source tree is gone
    monkeypatch.setattr(images, "decode", lambda *_: pytest.fail("decoded again"))
    again = load_domain(AMAZON, size=16)
    assert isinstance(again.train_images, np.memmap)
    assert np.array_equal(first.train_images, again.train_images)
    assert np.array_equal(first.test_labels, again.test_labels)


def test_the_manifest_lists_sources_skipped_files_counts_and_hashes(root):
    load_domain(AMAZON, size=16)
    manifest = json.loads((published_path(AMAZON, 16) / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 10, "test": 2}
    assert manifest["data_folder"] == str(root / "fxoffice")
    assert manifest["sources"]["test"] == [
        "amazon/images/back_pack/frame_0000.jpg",
        "amazon/images/bike/frame_0003.jpg",
    ]
    assert len(manifest["sources"]["train"]) == 10
    assert manifest["skipped"] == [
        {"path": "amazon/images/mug/frame_0099.jpg", "error": "Truncated File Read"}
    ]
    assert manifest["files"]["train_images.npy"]["shape"] == [10, 16, 16, 3]
    assert len(manifest["files"]["test_labels.npy"]["sha256"]) == 64
    assert manifest["build_seconds"] >= 0


def test_bad_images_are_skipped_with_one_warning(root, capsys):
    load_domain(AMAZON, size=16)
    manifest = published_path(AMAZON, 16) / "manifest.json"
    assert capsys.readouterr().err == (
        f"xdkd: warning: domain '{AMAZON}' (fxoffice): 1 unreadable or truncated image: "
        f"{bad_file(root)}; skipped them (all are listed in {manifest})\n"
    )
    load_domain(AMAZON, size=16)
    assert capsys.readouterr().err == ""  # once, when the cache is built


def test_stop_refuses_bad_images_and_leaves_no_cache(root, monkeypatch):
    monkeypatch.setenv("XDKD_BAD_IMAGES", "stop")
    message = (
        f"domain '{AMAZON}' (fxoffice): 1 unreadable or truncated image: {bad_file(root)}; "
        "replace or delete them, or skip them with --bad-images skip (XDKD_BAD_IMAGES=skip)"
    )
    with pytest.raises(XdkdError) as error:
        load_domain(AMAZON, size=16)
    assert str(error.value) == message
    assert [p.name for p in (cache_dir() / "domains").iterdir()] == [f".{AMAZON}-16px-v1.lock"]
    monkeypatch.setenv("XDKD_BAD_IMAGES", "skip")
    load_domain(AMAZON, size=16)
    monkeypatch.setenv("XDKD_BAD_IMAGES", "stop")  # a cache built with skip obeys stop too
    with pytest.raises(XdkdError, match="replace or delete them"):
        load_domain(AMAZON, size=16)


def count_builds(monkeypatch, delay: float = 0.0) -> list[str]:
    builds: list[str] = []
    real = cache._build

    def build(info, size, final):
        builds.append(info.name)
        time.sleep(delay)
        return real(info, size, final)

    monkeypatch.setattr(cache, "_build", build)
    return builds


def test_each_size_has_its_own_cache_and_a_damaged_one_is_rebuilt(root, monkeypatch):
    builds = count_builds(monkeypatch)
    load_domain("fxnet_clipart", size=16)
    load_domain("fxnet_clipart", size=24)
    load_domain("fxnet_clipart", size=16)
    assert builds == ["fxnet_clipart"] * 2
    labels = published_path("fxnet_clipart", 16) / "test_labels.npy"
    labels.write_bytes(labels.read_bytes()[:-1] + b"\x07")  # same size, other bytes: hashed
    load_domain("fxnet_clipart", size=16)
    assert len(builds) == 3


def test_big_files_are_checked_by_size_and_shape_not_hashed(root, monkeypatch):
    load_domain("fxnet_clipart", size=16)
    builds = count_builds(monkeypatch)
    monkeypatch.setattr(cache, "FULL_HASH_BYTES", 0)
    file = published_path("fxnet_clipart", 16) / "train_images.npy"
    data = file.read_bytes()
    file.write_bytes(data[:-1] + b"\x00")  # same size: not noticed, by design
    load_domain("fxnet_clipart", size=16)
    assert builds == []
    file.write_bytes(data[:-100])  # cut short: rebuilt
    load_domain("fxnet_clipart", size=16)
    assert builds == ["fxnet_clipart"]


def test_concurrent_loads_build_once(root, monkeypatch):
    builds = count_builds(monkeypatch, delay=0.3)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_domain("svhn", size=16)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == ["svhn"]
    assert np.array_equal(results[0].train_images, results[1].train_images)
