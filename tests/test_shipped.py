"""The folders the package ships (dataset families, suites), found in the checkout or inside an
installed wheel, and the folders `$XDKD_DATASETS` / `$XDKD_BASELINES` add to them."""

from __future__ import annotations

import os

import pytest

from benchmark.cli import main
from benchmark.cli.run import suite_path
from benchmark.errors import XdkdError
from benchmark.shipped import search_path, shipped
from benchmark.suite import families


def test_the_shipped_folders_hold_the_default_suite_and_the_digit_families():
    assert (shipped("baselines") / "quick.yaml").is_file()
    assert (shipped("datasets") / "digits.yaml").is_file()


def test_an_added_suite_folder_is_searched_first_and_the_shipped_suites_stay(tmp_path, monkeypatch):
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir(), other.mkdir()
    (mine / "quick.yaml").write_text("name: quick\n")
    (other / "extra.yaml").write_text("name: extra\n")
    monkeypatch.setenv("XDKD_BASELINES", os.pathsep.join([str(mine), str(other)]))
    assert suite_path("quick") == mine / "quick.yaml"
    assert suite_path("extra") == other / "extra.yaml"
    assert suite_path("ci") == shipped("baselines") / "ci.yaml"
    with pytest.raises(XdkdError, match="unknown suite 'extr'; did you mean 'extra'"):
        suite_path("extr")


def test_a_missing_added_folder_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDKD_BASELINES", str(tmp_path / "nowhere"))
    with pytest.raises(XdkdError, match=f"XDKD_BASELINES: no folder {tmp_path / 'nowhere'}"):
        search_path("baselines")
    monkeypatch.setenv("XDKD_DATASETS", str(tmp_path / "absent"))
    families._registry.cache_clear()
    assert main(["datasets"]) == 2
    absent = tmp_path / "absent"
    assert capsys.readouterr().err == (
        f"xdkd: error: XDKD_DATASETS: no folder {absent}; give folders of datasets files\n"
    )


def _family(folder, domain: str) -> None:
    (folder / "extra.yaml").write_text(
        "family: extra\nclasses: [a, b]\nroot: extra\nlayout: a folder per class\n"
        "homepage: https://example.org\nlicence: CC0\n"
        f"domains:\n  {domain}: {{kind: image_folder, path: one, images: 3, source: made}}\n"
    )


def test_an_added_family_joins_the_shipped_ones_and_a_repeated_domain_names_both_files(
    tmp_path, monkeypatch
):
    _family(tmp_path, "extra_one")
    monkeypatch.setenv("XDKD_DATASETS", str(tmp_path))
    families._registry.cache_clear()
    names = families.all_domains()
    assert "extra_one" in names and "mnist" in names  # added, and the shipped ones kept
    _family(tmp_path, "mnist")
    families._registry.cache_clear()
    with pytest.raises(XdkdError) as error:
        families.all_domains()
    message = str(error.value)
    assert message.startswith(f"{shipped('datasets') / 'digits.yaml'}: domain 'mnist'")
    assert f"already declared in {tmp_path / 'extra.yaml'}" in message
    families._registry.cache_clear()
