"""Every published format read from tiny files written in that format: the official splits,
labels, RGB, the resize, and one-line errors for missing or damaged data."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_writers import level, save_image, use_fixtures
from PIL import Image

from benchmark.cli import main
from benchmark.data.domains import load_domain
from benchmark.data.images import decode
from benchmark.data.readers import read_domain
from benchmark.suite.families import domain_info


@pytest.fixture
def root(tmp_path, monkeypatch):
    return use_fixtures(tmp_path, monkeypatch)


def assert_flat_levels(images: np.ndarray, labels: np.ndarray, tolerance: int) -> None:
    """Each image is its label's flat grey level in every channel, give or take `tolerance`."""
    expected = np.array([level(y) for y in labels])[:, None, None, None]
    assert np.abs(images.astype(int) - expected).max() <= tolerance


@pytest.mark.parametrize(
    ("name", "native", "tolerance"),
    [
        ("mnist_full", (28, 28), 0),
        ("usps", (16, 16), 1),  # LIBSVM stores floats in [-1, 1]
        ("svhn", (32, 32, 3), 0),
        ("syndigits_full", (32, 32, 3), 0),
    ],
)
def test_published_digit_arrays_load_with_their_official_split(root, name, native, tolerance):
    sources = read_domain(domain_info(name))
    assert sources["train"].arrays.shape[1:] == native  # the native size, until the cache
    splits = load_domain(name, size=32)
    assert splits.train_images.shape == (20, 32, 32, 3) and splits.test_images.shape[0] == 10
    assert splits.train_images.dtype == np.uint8
    assert splits.train_labels.tolist() == [i % 10 for i in range(20)]  # the files' own order
    assert_flat_levels(splits.train_images, splits.train_labels, tolerance)
    assert_flat_levels(splits.test_images, splits.test_labels, tolerance)


def test_svhn_labels_zero_as_zero_not_ten(root):
    splits = load_domain("svhn", size=32)
    assert set(splits.train_labels.tolist()) == set(range(10))


def test_mnistm_folder_reads_its_label_files(root):
    sources = read_domain(domain_info("mnistm_full"))
    assert sources["train"].files[:2] == [
        "mnist_m_train/00000000.png",
        "mnist_m_train/00000001.png",
    ]
    splits = load_domain("mnistm_full", size=24)
    assert splits.train_images.shape == (20, 24, 24, 3) and len(splits.test_labels) == 10
    assert_flat_levels(splits.test_images, splits.test_labels, 0)


def test_image_folder_counts_upper_case_extensions_and_splits_80_20(root):
    sources = read_domain(domain_info("fxoffice_amazon"))
    files = sources["train"].files + sources["test"].files
    assert "amazon/images/bike/frame_0000.JPG" in files
    assert len(files) == 13  # 3 classes x 4, and the truncated file (skipped at decoding)
    splits = load_domain("fxoffice_amazon", size=16)
    assert splits.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert splits.test_labels.tolist() == [0, 1]
    assert_flat_levels(splits.train_images, splits.train_labels, 2)  # JPEG


def test_image_list_keeps_the_official_split(root):
    splits = load_domain("fxnet_clipart", size=16)
    assert splits.train_labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert splits.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert_flat_levels(splits.test_images, splits.test_labels, 2)


def test_resize_keeps_the_aspect_ratio_and_crops_the_centre(tmp_path):
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20, 0] = wide[:, 20:40, 1] = wide[:, 40:, 2] = 255  # red | green | blue
    Image.fromarray(wide).save(tmp_path / "wide.png")
    image = decode(tmp_path / "wide.png", 8)
    assert image.shape == (8, 8, 3)
    assert (image[:, 1:-1] == [0, 255, 0]).all()  # the green centre square, not squeezed
    assert image[:, [0, -1], 1].min() == 224  # the filter reaches just past the crop's edge


def errors_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_missing_data_is_one_line_naming_path_layout_and_source(root, tmp_path, capsys):
    empty = tmp_path / "nowhere"
    err = errors_of(["datasets", "build", "fxoffice_amazon", "--data-root", str(empty)], capsys)
    assert err == (
        f"xdkd: error: domain 'fxoffice_amazon' (fxoffice): no folder {empty}/fxoffice/amazon/"
        "images; expected layout fxoffice/<domain>/images/<class>/<image>.jpg under the data "
        f"root (--data-root or XDKD_DATA, now {empty}); get it from https://example.org/office"
    )
    err = errors_of(["datasets", "build", "svhn", "--data-root", str(empty)], capsys)
    assert err == (
        f"xdkd: error: domain 'svhn' (digits): no file {empty}/svhn/train_32x32.mat; expected "
        "layout svhn/train_32x32.mat and svhn/test_32x32.mat (format 2, cropped digits) under "
        f"the data root (--data-root or XDKD_DATA, now {empty}); get it from "
        "http://ufldl.stanford.edu/housenumbers/"
    )


def test_a_damaged_file_is_one_line_not_a_traceback(root, capsys):
    (root / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut short")
    err = errors_of(["datasets", "build", "svhn"], capsys)
    assert err.startswith(
        f"xdkd: error: domain 'svhn' (digits): cannot read its data in {root}/svhn: "
    )


def test_a_folder_that_is_not_a_class_stops_the_load(root, capsys):
    save_image(root / "fxoffice" / "amazon" / "images" / "Mug" / "a.jpg", 2)
    err = errors_of(["datasets", "build", "fxoffice_amazon"], capsys)
    assert err == (
        f"xdkd: error: domain 'fxoffice_amazon' (fxoffice): folder {root}/fxoffice/amazon/images/"
        "Mug: unknown class 'Mug'; did you mean 'mug'? valid: back_pack, bike, mug; "
        "xdkd datasets check fxoffice lists every problem"
    )


def test_a_bad_list_line_names_file_and_line(root, capsys):
    listing = root / "fxnet" / "clipart_test.txt"
    listing.write_text(listing.read_text() + "clipart/mug/extra.jpg 7\n")
    err = errors_of(["datasets", "build", "fxnet_clipart"], capsys)
    assert err == (
        f"xdkd: error: {listing}:7: expected 'relative/path.jpg LABEL' with LABEL in 0..2, "
        "got 'clipart/mug/extra.jpg 7'"
    )


def test_a_family_file_mistake_is_one_line_with_its_line_number(tmp_path, monkeypatch, capsys):
    (tmp_path / "x.yaml").write_text(
        "family: x\nclasses: [a, b]\nroot: x\ndomains:\n"
        "  one: {kind: image_folder, path: one, images: 3}\n"
        "  two: {kind: imagefolder, path: two, images: 3}\n"
    )
    monkeypatch.setenv("XDKD_DATASETS", str(tmp_path))
    assert errors_of(["datasets"], capsys).startswith(
        f"xdkd: error: {tmp_path}/x.yaml:6: domains.two: Input tag 'imagefolder' found using "
        "'kind' does not match any of the expected tags: 'embedded', 'image_folder', "
    )
    (tmp_path / "x.yaml").write_text(
        "family: x\nclasses: [a, b]\nroot: x\ndomains:\n"
        "  one: {kind: image_folder, path: one, images: 3}\n"
    )
    assert errors_of(["datasets"], capsys) == (
        f"xdkd: error: {tmp_path}/x.yaml:1: (top level): domain 'one' needs layout, homepage, "
        "licence (on the domain or the family)"
    )
