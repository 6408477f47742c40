"""Corrupted test sets, generated once per (domain, split, image size, corruption version)
and kept losslessly as .npy uint8 under the cache dir, like the domains themselves.

Layout: `cache_dir()/corrupted/<domain>-<split>-<size>-v<N>/<corruption>-<severity>.npy`
plus a manifest.json with the sha256 of every file, of the clean images and of their test
indices (the images come in the stratified order `SplitProvider.robustness_sample` draws, and
the manifest lists those indices). Every load verifies the bytes it reads; a cell whose bytes
changed, or that is missing, is regenerated and the folder is rewritten atomically (a temp
dir renamed into place); verified cells are reused as they are. The seed of the image with
test index i is `derive_seed(0, domain, split, str(i))`, so each corrupted image is a pure
function of (domain, split, index, corruption, severity), wherever it sits in the sample.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from benchmark.corruptions.registry import CORRUPTIONS, apply_corruption, corruption_names
from benchmark.files import cache_dir, staged_directory
from benchmark.locks import file_lock
from benchmark.seeding import derive_seed

CORRUPTION_VERSION = 2  # bump when any corruption's output changes, so every set rebuilds
CHUNK = 256  # images per apply_corruption call: bounds memory at 224 px, never the result

Cell = tuple[str, int]


def corrupted_path(domain: str, split: str, size: int, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "corrupted" / f"{domain}-{split}-{size}-v{CORRUPTION_VERSION}"


def image_seeds(domain: str, split: str, indices: np.ndarray) -> torch.Tensor:
    """Per-image seeds named by (domain, split, index), independent of every other image."""
    return torch.tensor([derive_seed(0, domain, split, str(int(i))) for i in indices])


def cell_file(cell: Cell) -> str:
    return f"{cell[0]}-{cell[1]}.npy"


def generate_cell(
    images: np.ndarray, name: str, severity: int, seeds: torch.Tensor, device: torch.device
) -> np.ndarray:
    """One corrupted set: (N, H, W, 3) uint8 in, the same shape out."""
    out = []
    for start in range(0, len(images), CHUNK):
        chunk = torch.from_numpy(images[start : start + CHUNK]).permute(0, 3, 1, 2).to(device)
        corrupted = apply_corruption(chunk, name, severity, seeds[start : start + CHUNK])
        out.append(corrupted.permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out) if out else images.copy()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _images_digest(images: np.ndarray, indices: np.ndarray) -> str:
    order = np.ascontiguousarray(indices, dtype=np.int64).tobytes()
    return _sha256(str(images.shape).encode() + np.ascontiguousarray(images).tobytes() + order)


def _manifest_digests(path: Path, images_digest: str) -> dict[str, str]:
    """File name -> sha256 from the manifest; empty if there is none or it was made from
    other clean images."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):  # absent, or being replaced by another process right now
        return {}
    return manifest["sha256"] if manifest.get("images_sha256") == images_digest else {}


def _read_verified(path: Path, digest: str | None) -> bytes | None:
    if digest is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:  # absent, or being replaced by another process right now
        return None
    return data if _sha256(data) == digest else None


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write(final: Path, files: dict[str, bytes], header: dict) -> None:
    """Write the set into a temp dir beside `final`, then rename it into place."""
    with staged_directory(final) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        manifest = {
            **header,
            "sha256": {name: _sha256(data) for name, data in sorted(files.items())},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def load_corrupted(
    domain: str,
    split: str,
    images: np.ndarray,
    indices: np.ndarray,
    names: list[str] | None = None,
    device: str | torch.device = "cpu",
    root: Path | None = None,
) -> dict[Cell, np.ndarray]:
    """{(corruption, severity): (N, H, W, 3) uint8} for `names` (default: all registered)
    at each of their severities, for the clean images (N, H, W, 3) uint8 whose indices in
    the split are `indices`.

    Cells are read from the cache when their bytes verify and generated (on `device`)
    otherwise; the cache then holds every verified and new cell.
    """
    wanted = [
        (name, severity)
        for name in names or corruption_names()
        for severity in CORRUPTIONS.get(name).severities
    ]
    path = corrupted_path(domain, split, images.shape[1], root)
    digest = _images_digest(images, indices)
    files = _verified_cells(path, digest, wanted)
    if len(files) < len(wanted):
        with file_lock(path.with_name(path.name + ".lock")):  # one process generates
            files = _generate_missing(path, digest, wanted, domain, split, images, indices, device)
    return {
        cell: np.load(io.BytesIO(files[cell_file(cell)]), allow_pickle=False) for cell in wanted
    }


def _verified_cells(path: Path, digest: str, wanted: list[Cell]) -> dict[str, bytes]:
    digests = _manifest_digests(path, digest)
    files = {}
    for name in map(cell_file, wanted):
        data = _read_verified(path / name, digests.get(name))
        if data is not None:
            files[name] = data
    return files


def _generate_missing(
    path: Path,
    digest: str,
    wanted: list[Cell],
    domain: str,
    split: str,
    images: np.ndarray,
    indices: np.ndarray,
    device: str | torch.device,
) -> dict[str, bytes]:
    """Under the lock: read again (another process may have just written the cells), then
    generate what is still missing and rewrite the folder with every verified cell."""
    files = _verified_cells(path, digest, wanted)
    digests = _manifest_digests(path, digest)
    missing = [cell for cell in wanted if cell_file(cell) not in files]
    if missing:
        for name, file_digest in digests.items():  # keep the other verified cells
            data = None if name in files else _read_verified(path / name, file_digest)
            if data is not None:
                files[name] = data
        seeds = image_seeds(domain, split, indices)
        for cell in missing:
            array = generate_cell(images, cell[0], cell[1], seeds, torch.device(device))
            files[cell_file(cell)] = _array_bytes(array)
        header = {
            "domain": domain,
            "split": split,
            "size": images.shape[1],
            "count": len(images),
            "corruption_version": CORRUPTION_VERSION,
            "seeds": "derive_seed(0, domain, split, str(index))",
            "order": "seeded class-stratified (SplitProvider.robustness_sample)",
            "indices": [int(i) for i in indices],
            "images_sha256": digest,
        }
        _write(path, files, header)
    return files
