"""The catalogue of names, read as data: a process that has not imported the registries (no
torch) gets it from the cache file the registries wrote, or has them write it in a child
process when there is none for this code or it is damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = (
    "import json, sys\n"
    "from benchmark.suite.catalogue import catalogue, catalogue_path\n"
    "known = catalogue()\n"
    "print(json.dumps({'methods': len(known.methods), 'kd': 'kd' in known.methods,\n"
    "    'torch': 'torch' in sys.modules, 'path': str(catalogue_path())}))\n"
)


def probe(cache) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"XDKD_CACHE": str(cache), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_torch_free_process_reads_the_catalogue_the_registries_wrote(tmp_path):
    first = probe(tmp_path)
    assert first["kd"] and first["methods"] > 30 and not first["torch"]
    written = json.loads(Path(first["path"]).read_text())
    assert "kd" in written["methods"] and "gaussian_noise" in written["corruptions"]
    again = probe(tmp_path)  # from the file now
    assert again == first


def test_a_damaged_catalogue_file_is_rebuilt_not_trusted(tmp_path):
    path = probe(tmp_path)["path"]
    with open(path, "w") as damaged:
        damaged.write('{"format": 3, "methods": ')
    rebuilt = probe(tmp_path)
    assert rebuilt["kd"] and not rebuilt["torch"]
    assert "kd" in json.loads(Path(path).read_text())["methods"]


def test_a_process_with_the_registries_reads_them_directly(monkeypatch):
    """Names registered at run time (a test double here) are in it at once."""
    from benchmark.methods import METHODS
    from benchmark.methods.source_only import SourceOnly
    from benchmark.suite.catalogue import catalogue

    monkeypatch.setitem(METHODS._entries, "catalogue_probe", type("Probe", (SourceOnly,), {}))
    assert "catalogue_probe" in catalogue().methods


def test_a_plugin_that_fails_while_the_registries_write_the_catalogue_is_one_line(tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("raise RuntimeError('boom')\n")
    done = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "methods"],
        env={"XDKD_CACHE": str(tmp_path), "XDKD_PLUGINS": str(plugin), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"xdkd: error: plug-in plugin {plugin} failed to load: RuntimeError: boom\n"
    )
