"""The domain registry (declared in datasets/*.yaml) and the on-disk cache of embedded domains.

An embedded domain is built once, split once (seeded, stratified 80/20) and stored as .npy
arrays with a sha256 manifest under the cache dir; every later use loads and verifies those
bytes, so all runs of a suite see exactly the same images. Domains read from the data root
are cached per image size by `benchmark.data.cache`.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from benchmark.data.schema import EmbeddedEntry, FamilyFile, PublishedEntry
from benchmark.errors import XdkdError
from benchmark.files import note, read_manifest, set_aside, sha256_file, staged_directory
from benchmark.locks import file_lock
from benchmark.registry import unknown_name_message
from benchmark.seeding import name_seed

BUILD_VERSION = 1  # bump when a builder's output changes, so every cache rebuilds
TEST_FRACTION = 0.2
SPLIT_FILES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class DomainInfo:
    name: str
    family: str
    classes: tuple[str, ...]
    entry: EmbeddedEntry | PublishedEntry  # location fields filled in from the family
    file: Path  # the family file that declares it

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def embedded(self) -> bool:
        return isinstance(self.entry, EmbeddedEntry)

    @property
    def split_group(self) -> str:
        """The name that seeds this domain's splits: its own, or the domain it shares them with."""
        return getattr(self.entry, "split_group", None) or self.name


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
    from benchmark.plugins import dataset_folders
    from benchmark.suites import validation_message  # one line: file:line: field: problem

    domains: dict[str, DomainInfo] = {}
    files = [
        path for folder in [root, *dataset_folders()] for path in sorted(folder.glob("*.yaml"))
    ]
    for path in files:
        text = path.read_text()
        try:
            family = FamilyFile.model_validate(yaml.safe_load(text))
        except yaml.YAMLError as error:
            raise XdkdError(f"{path}: not a valid dataset family file: {error}") from None
        except ValidationError as error:
            raise XdkdError(validation_message(path, yaml.compose(text), error)) from None
        for name in family.domains:
            if name in domains:
                raise XdkdError(f"{path}: domain '{name}' is already declared by another family")
            entry = family.resolved(name)
            domains[name] = DomainInfo(name, family.family, tuple(family.classes), entry, path)
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


def scored_domains(source: str, target: str) -> list[str]:
    """The domains a run is scored on: the source, and the target's family domains of the
    target's provenance (embedded with embedded, published with published). A family can then
    hold both (digits.yaml) without embedded runs needing downloaded data, and what embedded
    runs measure does not change when published domains join their family."""
    info = domain_info(target)
    family = family_domains(info.family)
    scored = [name for name in family if domain_info(name).embedded == info.embedded]
    return scored if source in scored else [*scored, source]


def family_names() -> list[str]:
    return list(dict.fromkeys(info.family for info in all_domains().values()))


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
        from benchmark.data.cache import load_published

        return load_published(info, size, root)
    path = domain_path(name, root)
    if not _verified(path):
        with file_lock(path.parent / f".{path.name}.lock"):
            if not _verified(path):  # another process may have built it while we waited
                path = build_domain(name, root)
    arrays = {key: np.load(path / f"{key}.npy", allow_pickle=False) for key in SPLIT_FILES}
    return DomainSplits(name=name, **arrays)
