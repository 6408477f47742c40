"""The on-disk cache of embedded domains (their declarations: `benchmark.suite.families`).

An embedded domain is built once, split once (seeded, stratified 80/20) and stored as .npy
arrays with a sha256 manifest under the cache dir; every later use loads and verifies those
bytes, so all runs of a suite see exactly the same images. Domains read from the data root
are cached per image size by `benchmark.data.cache`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.data.cache import load_published
from benchmark.data.splits import SPLIT_FILES, DomainSplits, split_indices
from benchmark.files import cache_dir, note, read_manifest, set_aside, sha256_file, staged_directory
from benchmark.locks import file_lock
from benchmark.suite.families import DomainInfo, domain_info

BUILD_VERSION = 1  # bump when a builder's output changes, so every cache rebuilds


def _build(info: DomainInfo) -> dict[str, np.ndarray]:
    from benchmark.data.embedded import EMBEDDED_BUILDERS

    arrays = EMBEDDED_BUILDERS.get(info.entry.builder)()
    train, test = split_indices(arrays.labels, info.split_group)
    return {
        "train_images": arrays.images[train],
        "train_labels": arrays.labels[train],
        "test_images": arrays.images[test],
        "test_labels": arrays.labels[test],
    }


def domain_path(name: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "domains" / f"{name}-v{BUILD_VERSION}"


def build_domain(name: str, root: Path | None = None) -> Path:
    """Build a domain into the cache (atomically: a temp dir renamed into place)."""
    info = domain_info(name)
    final = domain_path(name, root)
    with staged_directory(final) as tmp:
        arrays = _build(info)
        for key in SPLIT_FILES:
            np.save(tmp / f"{key}.npy", arrays[key], allow_pickle=False)
        manifest = {
            "domain": name,
            "family": info.family,
            "build_version": BUILD_VERSION,
            "source": info.entry.source,
            "counts": {"train": len(arrays["train_labels"]), "test": len(arrays["test_labels"])},
            "sha256": {f"{key}.npy": sha256_file(tmp / f"{key}.npy") for key in SPLIT_FILES},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return final


def _verified(path: Path) -> bool:
    """Whether the cache folder holds every array with the sha256 its manifest recorded; a
    damaged manifest is set aside, a changed array named, and the domain is rebuilt."""
    manifest = read_manifest(path)
    if manifest is None:
        return False
    digests = manifest.get("sha256")
    if not isinstance(digests, dict) or set(digests) != {f"{k}.npy" for k in SPLIT_FILES}:
        set_aside(path / "manifest.json", "it does not list the domain's arrays")
        return False
    for file, digest in digests.items():
        if not (path / file).is_file() or sha256_file(path / file) != digest:
            note(f"cache {path / file} is missing or changed; rebuilding {path.name}")
            return False
    return True


def load_domain(name: str, root: Path | None = None, *, size: int = 32) -> DomainSplits:
    """The cached splits of a domain, built on first use and rebuilt if the bytes changed.

    Domains read from the data root are decoded and resized once per `size`; embedded ones are
    always 32 px and the device resizes them (`DeviceSplit.from_numpy`).
    """
    info = domain_info(name)
    if not info.embedded:
        return load_published(info, size, root)
    path = domain_path(name, root)
    if not _verified(path):
        with file_lock(path.parent / f".{path.name}.lock"):
            if not _verified(path):  # another process may have built it while we waited
                path = build_domain(name, root)
    arrays = {key: np.load(path / f"{key}.npy", allow_pickle=False) for key in SPLIT_FILES}
    return DomainSplits(name=name, **arrays)
