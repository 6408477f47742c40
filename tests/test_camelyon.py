"""Camelyon17-WILDS read from a tiny tree in WILDS v1.0's layout: one hospital per domain,
labels from `tumor`, the seeded 80/20 split, `datasets check`, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_writers import level, use_fixtures, write_camelyon

from benchmark.cli import main
from benchmark.data.domains import load_domain
from benchmark.data.readers import read_domain
from benchmark.suite.families import domain_info

LAYOUT = (
    "camelyon17_v1.0/metadata.csv and camelyon17_v1.0/patches/patient_<PPP>_node_<N>/"
    "patch_patient_<PPP>_node_<N>_x_<X>_y_<Y>.png (WILDS v1.0, as "
    'wilds.get_dataset("camelyon17", download=True) writes it)'
)
TAIL = "get it from https://wilds.stanford.edu/datasets/"


@pytest.fixture
def root(tmp_path, monkeypatch):
    """The usual fixtures (the shipped camelyon17.yaml among the families) and its tree in the
    data root."""
    root = use_fixtures(tmp_path, monkeypatch)
    write_camelyon(root)
    return root


def errors_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_a_hospital_holds_its_own_rows_labelled_by_tumor(root):
    sources = read_domain(domain_info("camelyon17_h2"))
    files = sorted(sources["train"].files + sources["test"].files)
    assert len(files) == 6 and all(f.startswith("patches/patient_022_node_2/") for f in files)
    splits = load_domain("camelyon17_h2", size=16)
    assert splits.train_labels.tolist() == [0, 1, 0, 1]  # the file's order, 2 of 3 per class
    assert sorted(splits.test_labels.tolist()) == [0, 1]
    assert splits.train_images.shape == (4, 16, 16, 3)
    for images, labels in (
        (splits.train_images, splits.train_labels),
        (splits.test_images, splits.test_labels),
    ):
        expected = np.array([level(int(label)) for label in labels])
        assert np.abs(images.mean(axis=(1, 2, 3)) - expected).max() <= 1


def test_a_patient_id_without_its_zero_padding_still_finds_its_patches(root):
    metadata = root / "camelyon17_v1.0" / "metadata.csv"
    metadata.write_text(metadata.read_text().replace(",011,", ",11,"))
    assert len(load_domain("camelyon17_h1", size=8).train_labels) == 4


def test_check_counts_every_hospital_and_warns_on_counts(root, capsys):
    assert main(["datasets", "check", "camelyon17", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"checking family 'camelyon17' under {root} (taken as the data root, holding "
        "camelyon17_v1.0/)"
    )
    assert lines[1:3] == [
        "camelyon17_h0: 6 images in 2 classes",
        "  WARNING 6 images, but camelyon17.yaml says 59436",
    ]
    assert lines[-1] == "OK: 0 error(s), 5 warning(s)"


def test_a_missing_metadata_file_is_one_line_with_the_layout(root, capsys):
    (root / "camelyon17_v1.0" / "metadata.csv").unlink()
    err = errors_of(["datasets", "build", "camelyon17_h0"], capsys)
    assert err == (
        f"xdkd: error: domain 'camelyon17_h0' (camelyon17): no file {root}/camelyon17_v1.0/"
        f"metadata.csv; expected layout {LAYOUT} under the data root (--data-root or XDKD_DATA, "
        f"now {root}); {TAIL}"
    )


def test_a_missing_patch_is_one_line_naming_it_and_the_layout(root, capsys):
    slide = root / "camelyon17_v1.0" / "patches" / "patient_033_node_3"
    first = sorted(slide.iterdir())[0]
    first.unlink()
    err = errors_of(["datasets", "build", "camelyon17_h3"], capsys)
    assert err == (
        f"xdkd: error: domain 'camelyon17_h3' (camelyon17): no file {first} (1 of the 6 "
        f"patches metadata.csv lists for centre 3 are missing); expected layout {LAYOUT}; {TAIL}"
    )


def test_metadata_without_wilds_columns_is_one_line(root, capsys):
    metadata = root / "camelyon17_v1.0" / "metadata.csv"
    metadata.write_text(metadata.read_text().replace("tumor", "label", 1))
    err = errors_of(["datasets", "build", "camelyon17_h0"], capsys)
    assert err == (
        f"xdkd: error: {metadata}: no column tumor; expected WILDS v1.0's header "
        "',patient,node,x_coord,y_coord,tumor,slide,center,split'"
    )
