"""`xdkd datasets check` and `xdkd datasets list` through the real command line."""

from __future__ import annotations

import shutil

import pytest
from dataset_writers import save_image, use_fixtures

from benchmark.cli import main


@pytest.fixture
def root(tmp_path, monkeypatch):
    return use_fixtures(tmp_path, monkeypatch)


def office_report(office) -> list[str]:
    """What the check of the fixture family says of each domain, its data in `office`."""
    return [
        "fxoffice_amazon: 13 images in 3 classes",
        f"  ERROR unreadable image {office}/amazon/images/mug/frame_0099.jpg: Truncated File Read",
        "  WARNING 13 images, but fxoffice.yaml says 12",
        "fxoffice_webcam: 9 images in 2 classes",
        f"  ERROR class 'bike' is missing: no folder {office}/webcam/images/bike",
        f"  ERROR unreadable image {office}/webcam/images/mug/notes.jpg: cannot identify image "
        f"file '{office}/webcam/images/mug/notes.jpg'",
        "  WARNING 9 images, but fxoffice.yaml says 12",
        "fxoffice_dslr: empty",
        f"  ERROR no images in {office}/dslr/images",
        "FAILED: 4 error(s), 2 warning(s)",
    ]


def test_check_reports_every_problem_and_fails(root, capsys):
    assert main(["datasets", "check", "fxoffice"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"checking family 'fxoffice' under {root} (taken as the data root, holding fxoffice/)",
        *office_report(root / "fxoffice"),
    ]


def test_check_takes_the_family_folder_a_user_just_unpacked(root, tmp_path, capsys):
    unpacked = tmp_path / "Downloads" / "office-unpacked"
    shutil.move(root / "fxoffice", unpacked)
    assert main(["datasets", "check", "fxoffice", "--root", str(unpacked)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"checking family 'fxoffice' in {unpacked} (taken as the family's own folder: what "
        "fxoffice/ holds)",
        *office_report(unpacked),
    ]


def test_check_names_a_missing_domain_and_a_folder_that_is_no_class(root, tmp_path, capsys):
    moved = tmp_path / "elsewhere"
    shutil.move(root, moved)
    shutil.rmtree(moved / "fxoffice" / "webcam")
    save_image(moved / "fxoffice" / "amazon" / "images" / "Mug" / "a.jpg", 2)
    assert main(["datasets", "check", "fxoffice", "--root", str(moved)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"checking family 'fxoffice' under {moved} (taken as the data root, holding fxoffice/)"
    )
    assert (
        f"  ERROR folder {moved}/fxoffice/amazon/images/Mug is not a class: unknown class 'Mug'; "
        "did you mean 'mug'? valid: back_pack, bike, mug"
    ) in lines
    assert lines[lines.index("fxoffice_webcam: missing") + 1] == (
        f"  ERROR domain 'fxoffice_webcam' (fxoffice): no folder {moved}/fxoffice/webcam/images; "
        "expected layout fxoffice/<domain>/images/<class>/<image>.jpg under the data root "
        f"(--data-root or XDKD_DATA, now {moved}); get it from https://example.org/office"
    )


def test_count_differences_are_warnings_and_pass(root, capsys):
    assert main(["datasets", "check", "digits"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "mnist: embedded (built from installed packages), nothing to check" in lines
    assert lines[lines.index("svhn: 30 images in 10 classes") + 1] == (
        "  WARNING 30 images, but digits.yaml says 99289"
    )
    assert lines[-1] == "OK: 0 error(s), 5 warning(s)"


def test_check_an_unknown_family(root, capsys):
    assert main(["datasets", "check", "fxofice"]) == 2
    assert capsys.readouterr().err == (
        "xdkd: error: unknown dataset family 'fxofice'; did you mean 'fxoffice'? "
        "valid: camelyon17, colored_digits, digits, domainnet, fxnet, fxoffice, office31, "
        "officehome, pacs, visda2017, vlcs\n"
    )


def test_list_shows_each_domain_and_whether_its_data_is_present(root, tmp_path, capsys):
    assert main(["datasets", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["mnist"][1:5] == ["digits", "5000", "10", "embedded"]
    assert rows["svhn"][1:5] == ["digits", "99289", "10", "present"]
    assert rows["fxoffice_dslr"][1:5] == ["fxoffice", "12", "3", "present"]
    assert main(["datasets", "list", "--data-root", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"data root: {tmp_path / 'none'} (--data-root or XDKD_DATA)\n")
    svhn = next(line for line in out.splitlines() if line.startswith("svhn "))
    assert svhn.split()[4] == "missing"
    assert f"get it from http://ufldl.stanford.edu/housenumbers/ into {tmp_path}/none/svhn" in out
