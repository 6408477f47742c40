"""Decoding and resizing images once, for the cache: square crops at the suite's size.

Every image keeps its aspect ratio: the centred square of side min(width, height) is resized
to size x size (PIL, bilinear with antialiasing), the same picture as resizing the shorter side
to `size` and centre-cropping (torchvision's Resize + CenterCrop), without stretching anything.
Files are decoded by DataLoader worker processes, in order; a file PIL cannot read to its end
(unreadable, truncated, not an image) is reported with its reason instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
CHUNK = 64  # files per worker task: big enough to hide the hand-over, small enough to balance


def is_image(path: Path) -> bool:
    """An image file by its extension, in any case (`IMG_001.JPG` counts)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def square(image: Image.Image, size: int) -> Image.Image:
    """The centred square of `image`, resized to size x size."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box)


def decode(path: Path, size: int) -> np.ndarray:
    """One file as (size, size, 3) uint8 RGB. A JPEG is decoded at the smallest DCT scale that
    still covers `size` (PIL's draft mode), several times faster for small sizes."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        return np.asarray(square(image.convert("RGB"), size))


def resize_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) grey or (N, H, W, 3) uint8 -> (N, size, size, 3) RGB; grey is replicated."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images)
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for index, image in enumerate(images):
        out[index] = np.asarray(square(Image.fromarray(image), size))
    return out


class _Chunks:
    """Item i: the decoded files of chunk i, and [(index in the chunk, reason)] for failures
    (a map-style dataset for torch's DataLoader, which takes any such object)."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return -(-len(self.paths) // CHUNK)

    def __getitem__(self, chunk: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
        images, failed = [], []
        for index, path in enumerate(self.paths[chunk * CHUNK : (chunk + 1) * CHUNK]):
            try:
                images.append(decode(path, self.size))
            except Exception as error:  # whatever stops PIL, the file is bad, the build goes on
                failed.append((index, str(error) or type(error).__name__))
        stacked = np.stack(images) if images else np.empty((0, self.size, self.size, 3), np.uint8)
        return stacked, failed


def _as_is(item: object) -> object:
    return item


def decode_images(
    paths: list[Path], size: int, workers: int
) -> Iterator[tuple[np.ndarray, list[tuple[int, str]]]]:
    """(decoded images, [(index into `paths`, reason)]) chunk by chunk, in order; the images
    of a chunk are its readable files in order."""
    from torch.utils.data import DataLoader

    chunks = _Chunks(paths, size)
    loader = DataLoader(
        chunks,
        batch_size=None,
        num_workers=workers if len(chunks) > 1 else 0,
        collate_fn=_as_is,
    )
    for chunk, (images, failed) in enumerate(loader):
        yield images, [(chunk * CHUNK + index, reason) for index, reason in failed]
