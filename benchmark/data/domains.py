"""The domain registry (declared in datasets/*.yaml) and the on-disk cache of built domains.

A domain is built once, split once (seeded, stratified 80/20) and stored as .npy arrays with
a sha256 manifest under the cache dir; every later use loads and verifies those bytes, so all
runs of a suite see exactly the same images.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.errors import XdkdError
from benchmark.registry import unknown_name_message
from benchmark.seeding import name_seed

BUILD_VERSION = 1  # bump when a builder's output changes, so every cache rebuilds
TEST_FRACTION = 0.2
SPLIT_FILES = ("train_images", "train_labels", "test_images", "test_labels")


class DomainEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["embedded"]
    builder: str
    images: int
    package: str
    source: str
    licence: str
    split_group: str | None = None


class FamilyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    description: str = ""
    classes: list[str]
    domains: dict[str, DomainEntry]


@dataclass(frozen=True)
class DomainInfo:
    name: str
    family: str
    classes: tuple[str, ...]
    entry: DomainEntry

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DomainSplits:
    """A domain's train and test split: images (N, H, W, 3) uint8, labels (N,) int64."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def datasets_dir() -> Path:
    return Path(os.environ.get("XDKD_DATASETS", Path(__file__).resolve().parents[2] / "datasets"))


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xdkd"
    return Path(os.environ.get("XDKD_CACHE", default))


@functools.cache
def _registry(root: Path) -> dict[str, DomainInfo]:
    domains: dict[str, DomainInfo] = {}
    for path in sorted(root.glob("*.yaml")):
        try:
            family = FamilyFile.model_validate(yaml.safe_load(path.read_text()))
        except (ValidationError, yaml.YAMLError) as error:
            raise XdkdError(f"{path}: not a valid dataset family file: {error}") from None
        for name, entry in family.domains.items():
            if name in domains:
                raise XdkdError(f"{path}: domain '{name}' is already declared by another family")
            domains[name] = DomainInfo(name, family.family, tuple(family.classes), entry)
    if not domains:
        raise XdkdError(f"no dataset family files (*.yaml) in {root}; set XDKD_DATASETS")
    return domains


def all_domains() -> dict[str, DomainInfo]:
    return _registry(datasets_dir())


def domain_info(name: str) -> DomainInfo:
    domains = all_domains()
    if name not in domains:
        raise XdkdError(unknown_name_message("domain", name, list(domains)))
    return domains[name]


def family_domains(family: str) -> list[str]:
    return [name for name, info in all_domains().items() if info.family == family]


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


def split_indices(labels: np.ndarray, group: str) -> tuple[np.ndarray, np.ndarray]:
    """The published split: (train, test), TEST_FRACTION of every class in test."""
    return stratified_split(labels, group, TEST_FRACTION)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(info: DomainInfo) -> dict[str, np.ndarray]:
    from benchmark.data.embedded import EMBEDDED_BUILDERS

    arrays = EMBEDDED_BUILDERS.get(info.entry.builder)()
    train, test = split_indices(arrays.labels, info.entry.split_group or info.name)
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
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        arrays = _build(info)
        for key in SPLIT_FILES:
            np.save(tmp / f"{key}.npy", arrays[key], allow_pickle=False)
        manifest = {
            "domain": name,
            "family": info.family,
            "build_version": BUILD_VERSION,
            "source": info.entry.source,
            "counts": {"train": len(arrays["train_labels"]), "test": len(arrays["test_labels"])},
            "sha256": {f"{key}.npy": _sha256(tmp / f"{key}.npy") for key in SPLIT_FILES},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _verified(path: Path) -> bool:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    return all(
        (path / file).is_file() and _sha256(path / file) == digest
        for file, digest in manifest["sha256"].items()
    )


def load_domain(name: str, root: Path | None = None) -> DomainSplits:
    """The cached splits of a domain, built on first use and rebuilt if the bytes changed."""
    path = domain_path(name, root)
    if not _verified(path):
        path = build_domain(name, root)
    arrays = {key: np.load(path / f"{key}.npy", allow_pickle=False) for key in SPLIT_FILES}
    return DomainSplits(name=name, **arrays)
