"""The ColorMNIST correlation shift (Arjovsky et al. 2019): disjoint thirds of the embedded
mnist digits, IRM's noisy binary label, and colour agreeing with it 90%, 80% and 10%."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.data.embedded import COLOUR_AGREEMENT, EMBEDDED_BUILDERS, DomainArrays
from benchmark.suite.families import domain_info

MNIST_DIGITS = 5000


@pytest.fixture(scope="module")
def built() -> dict[str, DomainArrays]:
    return {name: EMBEDDED_BUILDERS.get(name)() for name in [*COLOUR_AGREEMENT, "mnist"]}


def mnist_index(built: dict[str, DomainArrays], name: str) -> np.ndarray:
    """Which mnist digit each image of `name` colours (ink in its one coloured channel)."""
    position = {image.tobytes(): i for i, image in enumerate(built["mnist"].images[..., 0])}
    return np.array([position[image.tobytes()] for image in built[name].images.max(axis=-1)])


def colours(domain: DomainArrays) -> np.ndarray:
    """0 red, 1 green: the channel holding the ink."""
    return (domain.images[..., 1].reshape(len(domain.labels), -1).max(axis=1) > 0).astype(int)


def test_the_domains_share_no_digit_and_together_hold_all_of_mnist(built):
    indices = [mnist_index(built, name) for name in COLOUR_AGREEMENT]
    assert sum(len(i) for i in indices) == MNIST_DIGITS
    assert len(np.unique(np.concatenate(indices))) == MNIST_DIGITS


@pytest.mark.parametrize("name", sorted(COLOUR_AGREEMENT))
def test_each_image_is_red_or_green_and_the_family_file_agrees(built, name):
    domain = built[name]
    images = domain.images.reshape(len(domain.labels), -1, 3)
    assert (images[..., 2] == 0).all()  # no blue
    assert not ((images[..., 0] > 0).any(axis=1) & (images[..., 1] > 0).any(axis=1)).any()
    info = domain_info(name)
    assert info.family == "colored_digits" and info.classes == ("0-4", "5-9")
    assert info.entry.images == len(domain.labels)


@pytest.mark.parametrize("name", sorted(COLOUR_AGREEMENT))
def test_colour_agrees_with_the_label_as_often_as_named(built, name):
    agreement = (colours(built[name]) == built[name].labels).mean()
    assert abs(agreement - COLOUR_AGREEMENT[name]) < 0.03


@pytest.mark.parametrize("name", sorted(COLOUR_AGREEMENT))
def test_the_label_is_digit_five_or_more_with_a_quarter_flipped(built, name):
    digits = built["mnist"].labels[mnist_index(built, name)]
    agreement = ((digits >= 5) == built[name].labels).mean()
    assert abs(agreement - 0.75) < 0.03
    assert set(built[name].labels.tolist()) == {0, 1}


def test_a_second_build_gives_identical_bytes(built):
    again = EMBEDDED_BUILDERS.get("cmnist_rev")()
    np.testing.assert_array_equal(again.images, built["cmnist_rev"].images)
    np.testing.assert_array_equal(again.labels, built["cmnist_rev"].labels)
