"""The data_free protocol end to end: the student sees no real image, only the teacher.

One tiny sweep (a LeNet teacher on optdigits, `dafl` and `zskt` students, 1 epoch) checks
what the protocol grants and what the records say: no real training or validation image,
as many generated images per epoch as the source holds, the last epoch kept under every
selection rule, scoring on the source and the held-out domains; expansion refuses the
real-data methods under it with the reason, and the generator methods under every other
protocol; the same spec trained again gives the same numbers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import XdkdError
from benchmark.store import RunStore
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite
from benchmark.suite.specs import RunRecord

DATA_FREE = {
    "pairs": [{"source": "optdigits"}],
    "protocol": "data_free",
    # generators of 16 channels, not the papers' 128: the same code, an eighth of the width
    "methods": [
        "teacher",
        {"name": "dafl", "params": {"generator_width": 16}},
        {"name": "zskt", "params": {"generator_width": 16}},
    ],
    "corruptions": [],
    "heldout": ["mnist"],
}


def records(runs: Path) -> dict[str, RunRecord]:
    return {r.spec.method.name: r for r in RunStore(runs).records()}


def run(suite: Path, directory: Path) -> None:
    argv = ["run", str(suite), "--out", str(directory / "runs")]
    argv += ["--results", str(directory / "results"), "--workers", "0", "--no-progress"]
    assert main([*argv, "--device", "cpu"]) == 0


@pytest.fixture(scope="module")
def sweep(tiny_suite_module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding the sweep's `runs/`, `results/` and its suite `tiny.yaml`."""
    directory = tmp_path_factory.mktemp("data-free")
    suite = tiny_suite_module(**DATA_FREE)
    shutil.copy(suite, directory / "tiny.yaml")
    run(directory / "tiny.yaml", directory)
    return directory


def test_a_data_free_run_trains_on_generated_images_only(sweep: Path):
    found = records(sweep / "runs")
    assert set(found) == {"teacher", "dafl", "zskt"}
    for name in ("dafl", "zskt"):
        saw = found[name].saw
        assert saw["source_images"] == 0 and saw["source_validation_images"] == 0
        assert saw["unlabelled_target_images"] == 0 and saw["labelled_target_images"] == 0
        assert saw["generated_images_per_epoch"] > 1000  # optdigits' training part
        assert set(found[name].selections) == {"last"}  # no real image chose an epoch
        metrics = found[name].metrics
        assert 0.0 <= metrics["target_acc"] <= 1.0 and "heldout_mean_acc" in metrics
        assert found[name].spec.setting.targets == ["optdigits"]


def test_the_leaderboard_shows_data_free_rows_at_their_last_epoch(sweep: Path):
    board = (sweep / "results" / "leaderboard.md").read_text()
    assert "data_free rows: the last epoch" in board
    leaderboard = board.split("\n## ")[0]  # not the comparison and rank tables after it
    rows = [line for line in leaderboard.splitlines() if line.startswith(("| dafl", "| zskt"))]
    assert len(rows) == 2 and not any("| – " in row.split("data_free")[1][:40] for row in rows)


def test_real_data_methods_do_not_fit_data_free_and_generators_fit_nothing_else(
    tiny_suite, tmp_path: Path
):
    suite = tiny_suite(**{**DATA_FREE, "methods": ["teacher", "kd", "dafl"]})
    with pytest.raises(XdkdError, match="method 'kd' fits no setting.*needs real training"):
        expand(load_suite(suite))
    uda = tiny_suite(methods=["teacher", "kd", "zskt"])
    with pytest.raises(XdkdError, match="'zskt' fits no setting.*runs under data_free"):
        expand(load_suite(uda))


def test_a_data_free_run_retrained_gives_the_same_numbers(sweep: Path, tmp_path: Path):
    shutil.copytree(sweep / "runs", tmp_path / "runs")
    first = records(tmp_path / "runs")["dafl"]
    shutil.rmtree(RunStore(tmp_path / "runs").run_dir(first.key))  # the teacher stays
    run(sweep / "tiny.yaml", tmp_path)
    again = records(tmp_path / "runs")["dafl"]
    assert again.metrics["target_acc"] == first.metrics["target_acc"]
    assert again.curves["loss"] == first.curves["loss"]
