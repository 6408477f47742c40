"""Corruptions: shapes, growth with severity, per-image purity, agreement with the published
code's library calls (Hendrycks & Dietterich ICLR 2019), and the corrupted-set cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage
import torch
from PIL import Image
from scipy.ndimage import zoom as scipy_zoom
from skimage.draw import ellipse_perimeter, line_aa

from benchmark.corruptions import (
    CORRUPTIONS,
    apply_corruption,
    benchmark_names,
    cache,
    corruption_names,
    rng,
)
from benchmark.corruptions.blur import _local_copies, disk_kernel
from benchmark.corruptions.grid import save_corruption_grid
from benchmark.corruptions.ops import clipped_zoom

CELLS = [(name, s) for name in corruption_names() for s in CORRUPTIONS.get(name).severities]

# Published levels whose pixel distance from the clean image is not monotone in severity.
NOT_MONOTONE = {
    "glass_blur": "the blur (sigma .05-.4 px) smooths away the shuffle: 2 -> 3, 4 -> 5 shrink",
    "frost": "image weight drops from 1 to .75 while frost weight stalls at .4 (3 -> 4)",
    "elastic_transform": "CIFAR's affine jitter shrinks (.08 -> .03 of the size) as alpha grows",
    "saturate": "levels desaturate (x.3, x.1) and then oversaturate (x1.5 .. x2.5)",
    "spatter": "severities 1-3 are water drops, 4-5 mud: a different effect",
}


def synthetic(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Digit-like images: a two-colour gradient, an ink ring and stroke, mild noise."""
    gen = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        top, right, ink = gen.uniform(0, 1, (3, 3))
        image = top * (1 - yy[..., None]) + right * xx[..., None]
        rows, cols = ellipse_perimeter(
            size // 2, size // 2, size // 3, size // 5, shape=(size, size)
        )
        image[rows, cols] = image[np.clip(rows + 1, 0, size - 1), cols] = ink
        rr, cc, val = line_aa(4, int(gen.integers(4, size - 4)), size - 5, size // 2)
        image[rr, cc] = val[:, None] * ink + (1 - val[:, None]) * image[rr, cc]
        image += gen.normal(0, 0.02, image.shape)
        images.append((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    return np.stack(images)


IMAGES = torch.from_numpy(synthetic(6)).permute(0, 3, 1, 2).contiguous()
SEEDS = torch.tensor([11, 22, 33, 44, 55, 66])


def test_registry_groups() -> None:
    assert len(benchmark_names()) == 15
    assert all(CORRUPTIONS.get(name).counted for name in benchmark_names())
    assert set(corruption_names("validation")) == {
        "speckle_noise",
        "gaussian_blur",
        "spatter",
        "saturate",
    }
    assert len(corruption_names("shape")) == 8
    assert not any(CORRUPTIONS.get(n).counted for n in corruption_names("validation", "shape"))


@pytest.mark.parametrize(("name", "severity"), CELLS)
def test_cell_is_pure_per_image(name: str, severity: int) -> None:
    out = apply_corruption(IMAGES, name, severity, SEEDS)
    assert out.shape == IMAGES.shape and out.dtype == torch.uint8
    assert (out != IMAGES).any(), "the corruption left every image unchanged"
    assert torch.equal(out, apply_corruption(IMAGES, name, severity, SEEDS))
    single = apply_corruption(IMAGES[2:3], name, severity, SEEDS[2:3])
    assert torch.equal(single[0], out[2]), "an image's output depends on its batch"
    reversed_ = apply_corruption(IMAGES.flip(0), name, severity, SEEDS.flip(0))
    assert torch.equal(reversed_.flip(0), out), "an image's output depends on batch order"


@pytest.mark.parametrize(
    "name", [n for n in corruption_names() if n not in corruption_names("shape")]
)
def test_distance_grows_with_severity(name: str) -> None:
    distances = [
        (apply_corruption(IMAGES, name, s, SEEDS).float() - IMAGES.float()).abs().mean().item()
        for s in range(1, 6)
    ]
    monotone = all(b >= a for a, b in zip(distances, distances[1:], strict=False))
    assert monotone == (name not in NOT_MONOTONE), (name, distances)


@pytest.mark.parametrize("name", corruption_names())
def test_imagenet_size_runs(name: str) -> None:
    image = torch.from_numpy(synthetic(1, size=224)).permute(0, 3, 1, 2).contiguous()
    out = apply_corruption(image, name, 5, torch.tensor([7]))
    assert out.shape == image.shape and out.dtype == torch.uint8 and (out != image).any()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        apply_corruption(IMAGES.float(), "fog", 1, SEEDS)
    with pytest.raises(ValueError, match="severity"):
        apply_corruption(IMAGES, "fog", 6, SEEDS)


def test_glass_copies_match_the_published_loop() -> None:
    """The vectorised shuffle equals the sequential numpy loop, view-copy quirk included."""
    x, seeds = torch.rand(2, 3, 20, 20), torch.tensor([3, 4])
    for delta in (1, 3):
        out = _local_copies(x, delta, 2, seeds)
        visits = [
            (h, w) for h in range(20 - delta, delta, -1) for w in range(20 - delta, delta, -1)
        ]
        draws = rng.uniform(seeds, f"glass_blur/{delta}", 2, len(visits), 2)
        steps = ((draws * 2 * delta).floor().long() - delta).numpy()
        for n in range(2):
            image = x[n].permute(1, 2, 0).numpy().copy()
            for iteration in range(2):
                for j, (h, w) in enumerate(visits):
                    dx, dy = steps[n, iteration, j]
                    image[h, w], image[h + dy, w + dx] = image[h + dy, w + dx], image[h, w]
            np.testing.assert_array_equal(out[n].permute(1, 2, 0).numpy(), image)


def _published_disk(radius: float, alias_blur: float) -> np.ndarray:
    grid = np.arange(-8, 8 + 1)
    xs, ys = np.meshgrid(grid, grid)
    disk = np.array((xs**2 + ys**2) <= radius**2, dtype=np.float32)
    return cv2.GaussianBlur(disk / disk.sum(), ksize=(3, 3), sigmaX=alias_blur)


def test_library_calls_match() -> None:
    """Disk kernel (OpenCV), clipped zoom (scipy), HSV brightness and saturation (skimage)
    and BOX pixelation (Pillow) agree with the calls in the published code."""
    np.testing.assert_allclose(disk_kernel(1.5, 0.1).numpy(), _published_disk(1.5, 0.1), atol=1e-7)
    x = IMAGES[:1].float() / 255
    hwc = x[0].permute(1, 2, 0).double().numpy()
    size = hwc.shape[0]
    crop = int(np.ceil(size / 1.2))
    top = (size - crop) // 2
    zoomed = scipy_zoom(hwc[top : top + crop, top : top + crop], (1.2, 1.2, 1), order=1)
    trim = (zoomed.shape[0] - size) // 2
    expected = zoomed[trim : trim + size, trim : trim + size]
    np.testing.assert_allclose(clipped_zoom(x, 1.2)[0].permute(1, 2, 0), expected, atol=1e-5)
    hsv = skimage.color.rgb2hsv(hwc)
    hsv[..., 2] = np.clip(hsv[..., 2] + 0.3, 0, 1)
    bright = (skimage.color.hsv2rgb(hsv) * 255).round()
    got = apply_corruption(IMAGES[:1], "brightness", 5, SEEDS[:1])[0].permute(1, 2, 0)
    assert np.abs(got.numpy() - bright).max() <= 1
    hsv = skimage.color.rgb2hsv(hwc)
    hsv[..., 1] = np.clip(hsv[..., 1] * 2.5 + 0.2, 0, 1)
    saturated = (np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255).round()
    got = apply_corruption(IMAGES[:1], "saturate", 5, SEEDS[:1])[0].permute(1, 2, 0)
    assert np.abs(got.numpy() - saturated).max() <= 1
    pil = Image.fromarray(IMAGES[0].permute(1, 2, 0).numpy())
    pixelated = pil.resize((20, 20), Image.BOX).resize((32, 32), Image.BOX)
    got = apply_corruption(IMAGES[:1], "pixelate", 5, SEEDS[:1])[0].permute(1, 2, 0)
    np.testing.assert_array_equal(got.numpy(), np.asarray(pixelated))


def test_poisson_moments() -> None:
    for rate in (0.5, 4.0, 60.0, 500.0):
        draws = rng.poisson(torch.full((2, 20000), rate), torch.tensor([1, 2]), "test")
        assert draws.mean().item() == pytest.approx(rate, rel=0.02)
        assert draws.var().item() == pytest.approx(rate, rel=0.05)


@pytest.fixture
def counted_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setenv("XDKD_CACHE", str(tmp_path))
    calls: list[tuple[str, int]] = []
    real = cache.generate_cell

    def counting(images, name, severity, seeds, device):
        calls.append((name, severity))
        return real(images, name, severity, seeds, device)

    monkeypatch.setattr(cache, "generate_cell", counting)
    return calls


def test_cache_is_reused_and_rebuilt(counted_generation: list) -> None:
    images, names = synthetic(4), ["gaussian_noise", "rotate"]
    indices = np.arange(4)
    first = cache.load_corrupted("toy", "test", images, indices, names)
    assert sorted(first) == [("gaussian_noise", s) for s in range(1, 6)] + [("rotate", 1)]
    assert len(counted_generation) == 6
    again = cache.load_corrupted("toy", "test", images, indices, names)
    assert len(counted_generation) == 6, "a verified cache was regenerated"
    assert all(np.array_equal(first[cell], again[cell]) for cell in first)
    damaged = cache.corrupted_path("toy", "test", 32) / "gaussian_noise-3.npy"
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF
    damaged.write_bytes(bytes(data))
    rebuilt = cache.load_corrupted("toy", "test", images, indices, names)
    assert counted_generation[6:] == [("gaussian_noise", 3)]
    assert np.array_equal(rebuilt[("gaussian_noise", 3)], first[("gaussian_noise", 3)])
    cache.load_corrupted("toy", "test", images, indices, names)
    assert len(counted_generation) == 7


def test_cached_image_depends_only_on_its_index(counted_generation: list) -> None:
    images = synthetic(4)
    full = cache.load_corrupted("toy", "test", images, np.arange(4), ["shot_noise"])
    head = cache.load_corrupted("toy", "test", images[:2], np.arange(2), ["shot_noise"])
    assert len(counted_generation) == 10  # other images: generated again
    assert all(np.array_equal(head[cell], full[cell][:2]) for cell in full)
    # the same images in another order (a stratified sample): each keeps its own draws
    order = np.array([2, 0, 3, 1])
    shuffled = cache.load_corrupted("toy", "test", images[order], order, ["shot_noise"])
    assert all(np.array_equal(shuffled[cell], full[cell][order]) for cell in full)


def test_grid_png(tmp_path: Path) -> None:
    path = tmp_path / "grid.png"
    save_corruption_grid(synthetic(1)[0], path, "synthetic")
    assert path.stat().st_size > 10_000
