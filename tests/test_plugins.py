"""Plug-ins: the example package (`examples/my-method`) installed from its own pyproject.toml
and found through its entry points, and `--plugin` modules that are not installed; their
methods are listed with their origin, run in a suite with their version in the run key, and
go through the generic method test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.suite.config import MethodSpec

ROOT = Path(__file__).resolve().parents[1]
XDKD = [sys.executable, "-m", "benchmark.cli"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The example package installed into a folder of its own (pip, no network, no build
    isolation: setuptools comes from this environment); the environment that finds it."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(ROOT / "examples" / "my-method", work / "src")  # builds leave files
    target = work / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--target", str(target), str(work / "src")]
    subprocess.run(pip, check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}


def xdkd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*XDKD, *args], capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.mark.long
def test_the_example_package_is_listed_with_its_origin(installed, capsys):
    listed = xdkd("methods", env=installed)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("my_kd "))
    assert "unlabelled target images" in lines[start]
    assert lines[start + 2].endswith("[xdkd-my-method 0.1.0 (entry point xdkd.methods)]")
    assert xdkd("backbones", "my*", env=installed).stdout.splitlines()[0] == "my_cnn"
    assert main(["methods"]) == 0  # this process: the same checkout without the package
    here = capsys.readouterr().out
    assert "source_only " in here and "my_kd" not in here


@pytest.mark.long
def test_its_method_and_backbone_run_in_a_suite_with_the_version_in_the_key(
    installed, tiny_sweep, tmp_path
):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_sweep / "runs", runs)  # its lenet teacher is reused
    run = xdkd(
        "run",
        str(tiny_sweep / "tiny.yaml"),
        "--set",
        "methods=[my_kd]",
        "--set",
        "students=[my_cnn]",
        "--out",
        str(runs),
        "--results",
        str(tmp_path / "results"),
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
        env=installed,
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(p.read_text()) for p in runs.rglob("record.json")]
    mine = [r for r in records if r["spec"]["method"]["name"] == "my_kd"]
    assert len(mine) == 1
    assert mine[0]["spec"]["method"]["plugin"] == "xdkd-my-method==0.1.0"
    assert mine[0]["spec"]["student"]["name"] == "my_cnn"
    assert 0.0 < mine[0]["metrics"]["target_acc"] <= 1.0
    assert "my_kd" in (tmp_path / "results" / "leaderboard.md").read_text()
    builtin = [r for r in records if r["spec"]["method"]["name"] != "my_kd"]
    assert builtin and all("plugin" not in r["spec"]["method"] for r in builtin)


@pytest.mark.long
def test_its_method_goes_through_the_generic_method_test(installed):
    generic = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["tests/test_methods_generic.py", "-k", "my_kd and not vit"],
        capture_output=True,
        text=True,
        env=installed,
        cwd=ROOT,
    )
    assert generic.returncode == 0, generic.stdout[-2000:]
    summary = generic.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary


def test_the_plugin_version_is_hashed_only_into_plugin_methods():
    assert "plugin" not in MethodSpec(name="kd").model_dump()
    versions = [MethodSpec(name="my_kd", plugin=f"xdkd-my-method=={v}") for v in ("1", "2")]
    assert versions[0].model_dump()["plugin"] == "xdkd-my-method==1"
    assert versions[0].model_dump_json() != versions[1].model_dump_json()


FILE_PLUGIN = '''
"""A plug-in file: a method and a dataset family from outside any package."""
from pathlib import Path

from benchmark.methods.registry import METHODS
from benchmark.methods.source_only import SourceOnly


@METHODS.register("file_source_only")
class FileSourceOnly(SourceOnly):
    paper = "a --plugin file"


def dataset_families() -> Path:
    return Path(__file__).parent / "families"
'''

FAMILY = """
family: fxplugin
description: A family a plug-in adds.
classes: [cup, mug]
licence: CC0
homepage: https://example.org/fxplugin
root: fxplugin
layout: fxplugin/<domain>/<class>/<image>.png
domains:
  fxplugin_studio: {kind: image_folder, path: studio, images: 4}
"""


@pytest.mark.long
def test_a_plugin_file_adds_a_method_and_a_dataset_family(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(FILE_PLUGIN)
    (tmp_path / "families").mkdir()
    (tmp_path / "families" / "fxplugin.yaml").write_text(FAMILY)
    listed = xdkd("methods", "--plugin", str(plugin))  # accepted after the command too
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("file_source_only "))
    assert f"[plugin {plugin}]" in lines[start + 2]
    domains = xdkd("--plugin", str(plugin), "datasets", "list")
    assert domains.returncode == 0, domains.stderr
    assert "fxplugin_studio" in domains.stdout


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        ("missing_plugin.py", "--plugin missing_plugin.py: no such file"),
        ("no_such_module_xyz", "--plugin no_such_module_xyz: no module of that name"),
        ("broken.py", "failed to load: ZeroDivisionError: division by zero"),
    ],
)
def test_a_bad_plugin_is_one_line(tmp_path, plugin, expected):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    listed = subprocess.run(
        [*XDKD, "--plugin", plugin, "methods"], capture_output=True, text=True, cwd=tmp_path
    )
    assert listed.returncode == 2
    assert listed.stderr.startswith("xdkd: error: ") and expected in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1
