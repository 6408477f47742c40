"""Domains read from the data root, decoded and resized once per image size into the cache.

Layout: `cache_dir()/domains/<domain>-<size>px-v<N>/` holding {train,test}_{images,labels}.npy
(images (N, size, size, 3) uint8) and manifest.json: every array file's sha256, byte count and
shape, the source files in array order, the skipped bad files with their reasons, the counts
and the build time. A build holds a file lock, so concurrent processes never build the same
cache twice, and writes into a temp dir renamed into place, so a cache is whole or absent.

Loads memory-map the images, so opening a cache takes well under a second at any size.
Verification: files up to FULL_HASH_BYTES are hashed in full; a bigger file (DomainNet at
224 px is ~90 GB, minutes to hash) is checked by its byte count and the shape in its header,
which catches what actually happens to a cache (a copy cut short, a full disk, another build
version); since every write is atomic, a file never holds half-written bytes under its name.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from benchmark.data.images import decode_images, resize_arrays
from benchmark.data.readers import read_domain
from benchmark.data.settings import bad_image_policy, data_workers
from benchmark.data.sources import SplitSource, domain_folder, images_folder
from benchmark.data.splits import SPLIT_FILES, DomainSplits
from benchmark.errors import XdkdError
from benchmark.files import cache_dir, note, read_manifest, set_aside, sha256_file, staged_directory
from benchmark.locks import file_lock
from benchmark.suite.families import DomainInfo

CACHE_VERSION = 1  # bump when decoding or resizing changes, so every cache rebuilds
FULL_HASH_BYTES = 256 * 2**20  # sha256 runs at 0.5-2 GB/s: under half a second per file
SHOWN = 10  # bad files named in a message; the manifest lists them all
BLOCK = 1024  # images copied or resized per step: bounds memory at 224 px


def published_path(name: str, size: int, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "domains" / f"{name}-{size}px-v{CACHE_VERSION}"


def _intact(path: Path) -> dict | None:
    """The manifest of a whole, verified cache, else None (a damaged manifest is set aside,
    a changed array named; the caller rebuilds)."""
    manifest = read_manifest(path)
    if manifest is None:
        return None
    try:
        for name, expected in manifest["files"].items():
            file = path / name
            if file.stat().st_size != expected["bytes"]:
                raise ValueError(f"{name} has {file.stat().st_size} bytes, not {expected['bytes']}")
            if expected["bytes"] <= FULL_HASH_BYTES:
                if sha256_file(file) != expected["sha256"]:
                    raise ValueError(f"{name} changed (sha256)")
            elif list(np.load(file, mmap_mode="r").shape) != expected["shape"]:
                raise ValueError(f"{name} has another shape")
    except (KeyError, TypeError, AttributeError):
        set_aside(path / "manifest.json", "it does not list the cached arrays")
        return None
    except (OSError, ValueError) as error:
        note(f"cache {path} is damaged ({error}); rebuilding it")
        return None
    return manifest


def _bad_list(info: DomainInfo, folder: str, bad: list[dict]) -> str:
    shown = ", ".join(str(Path(folder) / item["path"]) for item in bad[:SHOWN])
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    count = f"{len(bad)} unreadable or truncated image{'s' if len(bad) > 1 else ''}"
    return f"domain '{info.name}' ({info.family}): {count}: {shown}{more}"


def _stop_on_bad(info: DomainInfo, folder: str, bad: list[dict]) -> None:
    if bad and bad_image_policy() == "stop":
        raise XdkdError(
            f"{_bad_list(info, folder, bad)}; replace or delete them, or skip them with "
            "--bad-images skip (XDKD_BAD_IMAGES=skip)"
        )


def _compact(file: Path, rows: int) -> None:
    """Keep the first `rows` images of an .npy file (the others were never written)."""
    source = np.load(file, mmap_mode="r")
    kept = file.with_name(f"kept-{file.name}")
    target = np.lib.format.open_memmap(kept, "w+", np.uint8, (rows, *source.shape[1:]))
    for start in range(0, rows, BLOCK):
        stop = min(start + BLOCK, rows)
        target[start:stop] = source[start:stop]
    target.flush()
    del source, target
    os.replace(kept, file)


def _write_images(source: SplitSource, size: int, file: Path) -> tuple[np.ndarray, list]:
    """Decode and resize a split into `file`; (indices kept, [(index, reason)] for bad files)."""
    count = len(source.labels)
    out = np.lib.format.open_memmap(file, "w+", np.uint8, (count, size, size, 3))
    bad: list[tuple[int, str]] = []
    if source.arrays is not None:
        for start in range(0, count, BLOCK):
            out[start : start + BLOCK] = resize_arrays(source.arrays[start : start + BLOCK], size)
    else:
        written = 0
        for images, failed in decode_images(source.paths, size, data_workers()):
            out[written : written + len(images)] = images
            written += len(images)
            bad += failed
    out.flush()
    del out
    if bad:
        _compact(file, count - len(bad))
    failed_index = {index for index, _ in bad}
    return np.array([i for i in range(count) if i not in failed_index], dtype=np.int64), bad


def _build(info: DomainInfo, size: int, final: Path) -> dict:
    started = time.perf_counter()
    sources = read_domain(info)
    folder = str(domain_folder(info))
    if not sum(len(source.labels) for source in sources.values()):
        raise XdkdError(f"domain '{info.name}' ({info.family}): no images in {images_folder(info)}")
    with staged_directory(final) as tmp:
        listed, skipped, counts = {}, [], {}
        for split, source in sources.items():
            kept, bad = _write_images(source, size, tmp / f"{split}_images.npy")
            np.save(tmp / f"{split}_labels.npy", source.labels[kept])
            counts[split] = len(kept)
            listed[split] = [source.files[i] for i in kept] if source.paths else source.files
            skipped += [{"path": source.files[i], "error": reason} for i, reason in bad]
        _stop_on_bad(info, folder, skipped)
        files = {}
        for key in SPLIT_FILES:
            file = tmp / f"{key}.npy"
            shape = list(np.load(file, mmap_mode="r").shape)
            files[file.name] = {
                "sha256": sha256_file(file),
                "bytes": file.stat().st_size,
                "shape": shape,
            }
        manifest = {
            "domain": info.name,
            "family": info.family,
            "kind": info.entry.kind,
            "size": size,
            "cache_version": CACHE_VERSION,
            "resize": "centred square of side min(width, height), resized bilinearly to size",
            "data_folder": folder,
            "counts": counts,
            "files": files,
            "sources": listed,
            "skipped": skipped,
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if skipped:  # once, at the build; the manifest keeps the list
        tqdm.write(
            f"xdkd: warning: {_bad_list(info, folder, skipped)}; skipped them (all are listed "
            f"in {final / 'manifest.json'})",
            file=sys.stderr,
        )
    return manifest


def load_published(info: DomainInfo, size: int, root: Path | None = None) -> DomainSplits:
    """A published domain's splits at `size` px: images memory-mapped, labels in memory."""
    path = published_path(info.name, size, root)
    manifest = _intact(path)
    if manifest is None:
        with file_lock(path.parent / f".{path.name}.lock"):
            manifest = _intact(path)  # another process may have built it while we waited
            if manifest is None:
                manifest = _build(info, size, path)
    _stop_on_bad(info, manifest["data_folder"], manifest["skipped"])
    arrays = {
        key: np.load(path / f"{key}.npy", mmap_mode="r" if key.endswith("images") else None)
        for key in SPLIT_FILES
    }
    return DomainSplits(name=info.name, **arrays)
