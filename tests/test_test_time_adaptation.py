"""Test-time adaptation end to end: a method that adapts (meta_dmoe) is trained once, its own
trained parts saved beside the student, and the harness adapts the student to every scored
domain at evaluation, with the budget in the record.

One tiny multi_source sweep on the coloured digits (two LeNet experts, 1 epoch): the run
directory holds the method's parts under its sha256; the record states the adaptation
budget; re-evaluating the finished run with a corruption added (`xdkd evaluate`) rebuilds
the method and gives the same clean numbers; and the numbers are the adapted student's, not
the saved student's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.data.provider import SplitProvider
from benchmark.data.setting import RunSplits
from benchmark.models import create_backbone
from benchmark.run.evaluate import clean_metrics
from benchmark.store import METHOD_WEIGHTS, RunStore

SUITE = {
    "pairs": [{"source": ["cmnist_90", "cmnist_80"], "target": "cmnist_rev"}],
    "protocol": "multi_source",
    "methods": ["meta_dmoe"],
    "corruptions": [],
    "teacher_floor": 0.0,
}
ARGS = ["--workers", "0", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def store(tiny_suite_module, tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    directory = tmp_path_factory.mktemp("adaptation")
    suite = tiny_suite_module(**SUITE)
    argv = ["run", str(suite), "--out", str(directory / "runs")]
    assert main([*argv, "--results", str(directory / "results"), *ARGS]) == 0
    return RunStore(directory / "runs")


def test_the_method_parts_are_saved_and_the_budget_recorded(store: RunStore):
    (record,) = store.records()
    training = json.loads((store.run_dir(record.key) / "training.json").read_text())
    assert training["weights"]["method"]["file"] == METHOD_WEIGHTS
    assert (store.run_dir(record.key) / METHOD_WEIGHTS).is_file()
    budget = record.training["adaptation"]
    assert budget["support_images"] == 24 and budget["steps"] == 1


def test_re_evaluation_rebuilds_the_method_and_gives_the_same_numbers(
    store: RunStore, tmp_path: Path
):
    shutil.copytree(store.root, tmp_path / "runs")
    again = RunStore(tmp_path / "runs")
    (before,) = again.records()
    argv = ["evaluate", str(again.root), "--set", "corruptions=[gaussian_noise]"]
    assert main([*argv, "--set", "corruption_images=60", *ARGS]) == 0
    (after,) = again.records()
    assert after.evaluation_key != before.evaluation_key and after.robustness
    scores = [k for k in before.metrics if k.startswith(("target_", "source_", "teacher_"))]
    assert scores and {k: after.metrics[k] for k in scores} == {
        k: before.metrics[k] for k in scores
    }


def test_the_scored_student_is_the_adapted_one(store: RunStore):
    (record,) = store.records()
    spec = record.spec
    training = store.training(record.key)
    student = create_backbone(spec.student, 2)
    student.load_state_dict(store.student_state(record.key, training, training["epochs"]))
    splits = RunSplits(SplitProvider(torch.device("cpu")), spec)
    (target,) = splits.scored_test()
    unadapted = clean_metrics(student.eval(), target.split)
    assert unadapted["nll"] != pytest.approx(record.metrics["target_nll"], abs=1e-6)
