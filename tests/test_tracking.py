"""Experiment trackers (`xdkd run --log`): TensorBoard event files and an MLflow file store
that their own readers load back with the values of the record, the same record as without
trackers, and one-line errors for an unknown tracker or a missing package."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.errors import XdkdError
from benchmark.run.tracking import (
    Tracker,
    open_trackers,
    parse_tracker_names,
    tracker_names_from_env,
)
from benchmark.run.train import LOG_EVERY, make_optimizer
from benchmark.store import RunStore
from benchmark.suite.metrics import MEASURED
from benchmark.suite.specs import RunRecord

# measured, not computed: they differ from run to run with or without trackers


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, tiny_suite_module, domain_cache) -> RunStore:
    """One tiny source_only run (and its teacher) logged to TensorBoard and MLflow; the suite
    is the tiny sweep's, so the run has the key of the tiny sweep's source_only run."""
    from benchmark.cli import main

    directory = tmp_path_factory.mktemp("tracked")
    suite = tiny_suite_module(methods=["source_only"])
    argv = ["run", str(suite), "--out", str(directory / "runs")]
    argv += ["--results", str(directory / "results"), "--workers", "0", "--no-progress"]
    argv += ["--device", "cpu", "--log", "tensorboard", "--log", "mlflow"]
    with pytest.MonkeyPatch.context() as patch:  # main sets both: later tests must not log
        patch.delenv("XDKD_LOG", raising=False)
        patch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        assert main(argv) == 0
        assert tracker_names_from_env() == ["tensorboard", "mlflow"]
    return RunStore(directory / "runs")


def only_record(store: RunStore) -> RunRecord:
    (record,) = store.records()
    return record


def logged_steps(record: RunRecord) -> list[int]:
    return list(range(0, record.training["steps"], LOG_EVERY))


def first_lr(record: RunRecord) -> float:
    """The rate of the first step under the run's recipe."""
    recipe, steps = record.spec.student_recipe, record.training["steps"]
    _, scheduler = make_optimizer([nn.Parameter(torch.zeros(1))], recipe, steps)
    return scheduler.get_last_lr()[0]


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def test_tensorboard_event_files_hold_losses_lr_curves_and_final_metrics(tracked):
    record = only_record(tracked)
    logs = tracked.root / "logs" / "tensorboard"
    run = scalars(logs / record.key)
    steps = record.training["steps"]
    assert [step for step, _ in run["train/ce"]] == logged_steps(record)
    assert run["train/lr"][0] == (0, pytest.approx(first_lr(record)))
    assert run["val/source_val_acc"] == [(steps, pytest.approx(record.curves["source_val_acc"][0]))]
    assert {"val/target_val_acc", "val/target_val_entropy", "train/epoch_loss"} <= set(run)
    assert run["final/target_acc"] == [(steps, pytest.approx(record.metrics["target_acc"]))]
    assert {f"final/{name}" for name in record.metrics} <= set(run)
    teacher = scalars(logs / f"teacher-{record.teachers[0]['key']}")
    assert {"train/ce", "train/lr", "train/epoch_loss", "final/source_accuracy"} <= set(teacher)


def test_mlflow_file_store_holds_the_spec_the_loss_history_and_final_metrics(tracked):
    from mlflow.tracking import MlflowClient

    record = only_record(tracked)
    client = MlflowClient(tracking_uri=(tracked.root / "logs" / "mlflow").as_uri())
    experiment = client.get_experiment_by_name(record.spec.suite)
    (run,) = client.search_runs([experiment.experiment_id], f"tags.xdkd_key = '{record.key}'")
    assert run.info.run_name == record.spec.label and run.info.status == "FINISHED"
    assert run.data.params["method.name"] == "source_only"
    assert run.data.params["setting.sources"] == '["optdigits"]'
    history = client.get_metric_history(run.info.run_id, "train/ce")
    assert [metric.step for metric in history] == logged_steps(record)
    assert run.data.metrics["final/target_acc"] == record.metrics["target_acc"]
    assert client.get_experiment_by_name("teachers") is not None


def test_trackers_change_no_number(tracked, tiny_sweep):
    with_trackers = only_record(tracked)
    without = RunStore(tiny_sweep / "runs").record(with_trackers.key)
    assert without is not None, "the suites differ: the runs have different keys"

    def computed(record: RunRecord) -> dict[str, float]:
        return {k: v for k, v in record.metrics.items() if k not in MEASURED}

    assert computed(with_trackers) == computed(without)
    assert with_trackers.curves == without.curves
    assert with_trackers.per_domain == without.per_domain


@pytest.mark.long
def test_each_member_of_a_cohort_logs_to_its_own_tracker_run(tiny_suite, tmp_path, domain_cache):
    """Runs trained together as a cohort each get their own TensorBoard run, with their own
    loss terms only (kd's `kd` term is not in source_only's run) and their own final metrics."""
    from benchmark.cli import main

    suite = tiny_suite(methods=["source_only", "kd"], corruptions=[])
    argv = ["run", str(suite), "--out", str(tmp_path / "runs"), "--workers", "0"]
    argv += ["--no-progress", "--device", "cpu", "--cohort-size", "2", "--log", "tensorboard"]
    with pytest.MonkeyPatch.context() as patch:  # main sets XDKD_LOG: later tests must not log
        patch.delenv("XDKD_LOG", raising=False)
        assert main([*argv, "--results", str(tmp_path / "results")]) == 0
    records = {r.spec.method.name: r for r in RunStore(tmp_path / "runs").records()}
    assert all(records[m].training["cohort"]["size"] == 2 for m in ("source_only", "kd"))
    for method, own, other in (("kd", "train/kd", None), ("source_only", "train/ce", "train/kd")):
        record = records[method]
        run = scalars(tmp_path / "runs" / "logs" / "tensorboard" / record.key)
        assert [step for step, _ in run[own]] == logged_steps(record)
        assert other not in run
        steps = record.training["steps"]
        assert run["final/target_acc"] == [(steps, pytest.approx(record.metrics["target_acc"]))]


def test_names_are_comma_separated_and_none_opens_a_tracker_that_writes_nothing(tmp_path):
    assert parse_tracker_names(" tensorboard,mlflow,tensorboard ", "--log ") == [
        "tensorboard",
        "mlflow",
    ]
    assert parse_tracker_names("", "XDKD_LOG=") == []
    tracker = open_trackers([], tmp_path, "run", "key", "suite")
    assert type(tracker) is Tracker
    tracker.log_metrics({"train/ce": 1.0}, 0)
    tracker.close()
    assert not any(tmp_path.iterdir())


def test_an_unknown_tracker_is_one_line_listing_the_valid_ones(
    tiny_suite, tmp_path, monkeypatch, capsys
):
    from benchmark.cli import main

    monkeypatch.delenv("XDKD_LOG", raising=False)
    argv = ["run", str(tiny_suite()), "--log", "tensorbord", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (
        "xdkd: error: --log tensorbord: unknown tracker 'tensorbord'; did you mean "
        "'tensorboard'? valid: mlflow, tensorboard, wandb\n"
    )
    monkeypatch.setenv("XDKD_LOG", "tensorboard,comet")
    with pytest.raises(XdkdError, match=r"^XDKD_LOG=comet: unknown tracker 'comet'"):
        tracker_names_from_env()


def test_a_missing_tracker_package_is_one_line_naming_the_extra(
    tiny_suite, tmp_path, monkeypatch, capsys
):
    from benchmark.cli import main

    monkeypatch.delenv("XDKD_LOG", raising=False)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    argv = ["run", str(tiny_suite()), "--log", "mlflow,tensorboard", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (
        "xdkd: error: --log tensorboard needs the tensorboard package: "
        "pip install 'xdkd-bench[tensorboard]'\n"
    )
    monkeypatch.setenv("XDKD_LOG", "tensorboard")
    with pytest.raises(XdkdError, match=r"^XDKD_LOG=tensorboard needs the tensorboard package"):
        tracker_names_from_env()


def test_wandb_logs_offline_into_the_runs_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with open_trackers(["wandb"], tmp_path, "a run", "abc123", "tiny") as tracker:
        tracker.log_params({"method.name": "kd"})
        tracker.log_metrics({"train/kd": 0.5, "train/lr": 0.1}, 0)
        tracker.log_metrics({"final/target_acc": 0.9}, 20)
    assert any((tmp_path / "wandb").rglob("offline-run-*abc123*"))


def test_evaluating_again_logs_to_the_same_mlflow_run(tracked, tmp_path, monkeypatch):
    import shutil

    from mlflow.tracking import MlflowClient

    from benchmark.cli import main

    monkeypatch.delenv("XDKD_LOG", raising=False)
    root = tmp_path / "runs"
    shutil.copytree(tracked.root, root)
    argv = ["evaluate", str(root), "--set", "corruption_images=50", "--log", "mlflow"]
    assert main([*argv, "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    record = only_record(RunStore(root))
    client = MlflowClient(tracking_uri=(root / "logs" / "mlflow").as_uri())
    experiment = client.get_experiment_by_name(record.spec.suite)
    (run,) = client.search_runs([experiment.experiment_id], f"tags.xdkd_key = '{record.key}'")
    history = client.get_metric_history(run.info.run_id, "final/mca")
    assert len(history) == 2 and history[-1].value == record.metrics["mca"]
