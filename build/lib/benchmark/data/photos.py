"""Colour photos that installed packages ship inside themselves: backgrounds for synthetic digits.

MNIST-M (Ganin et al. 2016) cuts its backgrounds from BSDS500 photos, which would need a download;
scikit-learn and scikit-image ship a handful of natural colour photos on disk, which is enough once
each photo is rescaled and mirrored. scikit-image fetches some images with pooch over the network,
so its photos are read straight from its package folder and a photo not on disk is skipped.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from benchmark.errors import XdkdError

# Public domain (astronaut, rocket) or CC0 (chelsea, coffee); scikit-learn's two are CC BY 2.0.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
PHOTO_SCALES = (0.25, 0.5, 1.0)


def require(domain: str, module: str, package: str, role: str = "ships its data") -> ModuleType:
    """Import `module`, or raise one line that names the domain, the package and the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise XdkdError(
            f"domain '{domain}' needs the package '{package}', which {role}: pip install {package}"
        ) from error


def load_photos(domain: str) -> list[np.ndarray]:
    """The shipped colour photos as (H, W, 3) uint8 arrays in a fixed order, read from disk only."""
    sklearn_datasets = require(domain, "sklearn.datasets", "scikit-learn", "ships its photos")
    skimage_data = require(domain, "skimage.data", "scikit-image", "ships its photos")
    image = require(domain, "PIL.Image", "pillow", "reads its photos")
    photos = [
        np.asarray(photo, dtype=np.uint8) for photo in sklearn_datasets.load_sample_images().images
    ]
    folder = Path(skimage_data.__file__).parent
    for name in SKIMAGE_PHOTOS:
        if (folder / name).is_file():
            with image.open(folder / name) as photo:
                photos.append(np.asarray(photo.convert("RGB")))
    return photos


def photo_pool(domain: str) -> list[np.ndarray]:
    """Every photo at a few scales and mirrored, for varied patches from only a few photos."""
    image = require(domain, "PIL.Image", "pillow", "rescales its photos")
    pool = []
    for photo in load_photos(domain):
        original = image.fromarray(photo)
        for scale in PHOTO_SCALES:
            size = (round(original.width * scale), round(original.height * scale))
            scaled = np.asarray(original.resize(size, image.Resampling.BILINEAR))
            pool += [scaled, np.ascontiguousarray(scaled[:, ::-1])]
    return pool


def random_patches(
    pool: list[np.ndarray], count: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """`count` (size, size, 3) crops, each from a random pool photo at a random position."""
    which = rng.integers(len(pool), size=count)
    corners = rng.random((count, 2))
    patches = np.empty((count, size, size, 3), dtype=np.uint8)
    for index, (photo_index, (u, v)) in enumerate(zip(which, corners, strict=True)):
        photo = pool[photo_index]
        top = int(u * (photo.shape[0] - size + 1))
        left = int(v * (photo.shape[1] - size + 1))
        patches[index] = photo[top : top + size, left : left + size]
    return patches
