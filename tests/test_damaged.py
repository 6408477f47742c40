"""Damaged artefacts are verified when read, set aside with a note and rebuilt, never trusted;
evaluation settings never change training; failures say what really happened.

The session's finished tiny sweep (a LeNet teacher and students on optdigits -> mnist, one
epoch) is copied for each case, damaged, and run again."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import store as store_module
from benchmark.cli import main
from benchmark.failures import describe_exit, describe_failure
from benchmark.store import RunStore


def run(suite: Path, out: Path, *extra: str) -> int:
    argv = ["run", str(suite), "--out", str(out), "--results", str(out / "results")]
    return main([*argv, "--workers", "0", "--no-progress", "--device", "cpu", *extra])


@pytest.fixture
def copy(tiny_sweep, tmp_path) -> tuple[Path, RunStore]:
    """A copy of the finished tiny sweep (teacher, source_only, kd), to damage."""
    shutil.copytree(tiny_sweep / "runs", tmp_path / "runs")
    return tiny_sweep / "tiny.yaml", RunStore(tmp_path / "runs")


def student_dir(store: RunStore, method: str = "source_only") -> Path:
    (path,) = [
        p.parent
        for p in store.root.glob("runs/*/training.json")
        if store.load_spec(p.parent.name).method.name == method
    ]
    return path


def cut(path: Path, keep: int = 200) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.long
def test_a_truncated_teacher_is_set_aside_and_trained_again(copy, capsys):
    suite, store = copy
    (teacher,) = store.root.glob("teachers/*")
    cut(teacher / "weights.pt")
    for path in store.root.glob("runs/*/record.json"):
        path.unlink()  # the runs must read their teacher again
    assert run(suite, store.root) == 0
    err = capsys.readouterr().err
    assert f"{teacher / 'weights.pt'} is damaged" in err and "Traceback" not in err
    assert list(teacher.glob("weights.pt.corrupt-*")) and (teacher / "weights.pt").is_file()
    assert len(store.records()) == 3


def test_a_truncated_record_is_not_done_and_is_evaluated_again_without_training(copy, capsys):
    suite, store = copy
    directory = student_dir(store)
    trained = (directory / "training.json").stat().st_mtime_ns
    cut(directory / "record.json")
    assert main(["status", str(store.root)]) == 0
    out = capsys.readouterr()
    assert "2 done" in out.out and "1 queued" in out.out and "record.json is damaged" in out.err
    assert run(suite, store.root) == 0
    assert "evaluated in" in capsys.readouterr().out
    assert (directory / "training.json").stat().st_mtime_ns == trained
    assert len(store.records()) == 3 and list(directory.glob("record.json.corrupt-*"))


def test_damaged_student_weights_are_set_aside_and_the_run_trains_again(copy, capsys):
    suite, store = copy
    directory = student_dir(store)
    (weights,) = directory.glob("student-e*.pt")
    weights.write_bytes(weights.read_bytes() + b"x")
    (directory / "record.json").unlink()
    assert run(suite, store.root) == 0
    err = capsys.readouterr().err
    assert "training.json is damaged" in err and "sha256" in err
    assert store.training(directory.name) is not None and len(store.records()) == 3


def test_a_truncated_error_file_and_checkpoint_do_not_stop_anything(copy, capsys):
    suite, store = copy
    directory = student_dir(store)
    for name in ("record.json", "training.json"):
        (directory / name).unlink()
    (directory / "error.json").write_text('{"error": ')
    assert main(["status", str(store.root)]) == 0
    out = capsys.readouterr()
    assert "error.json is damaged" in out.err and "1 queued" in out.out
    (directory / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    assert run(suite, store.root) == 0
    assert "checkpoint.pt is damaged" in capsys.readouterr().err
    assert not (directory / "checkpoint.pt").exists() and len(store.records()) == 3


def test_a_damaged_domain_cache_manifest_is_named_and_rebuilt(domain_cache, capsys):
    from benchmark.data.domains import domain_path, load_domain

    load_domain("optdigits")
    manifest = domain_path("optdigits") / "manifest.json"
    manifest.write_text("{broken")
    assert main(["datasets", "build", "optdigits"]) == 0
    assert f"{manifest} is damaged" in capsys.readouterr().err
    assert json.loads(manifest.read_text())["domain"] == "optdigits"


def test_evaluation_settings_never_change_training(copy, capsys):
    suite, store = copy
    before = {r.key: r for r in store.records()}
    directory = student_dir(store)
    trained = (directory / "training.json").stat().st_mtime_ns
    assert run(suite, store.root, "--set", "corruption_images=0", "--set", "teacher_floor=0.9") == 0
    out = capsys.readouterr().out
    assert "3 trained runs have another evaluation: evaluated again, not trained" in out
    after = {r.key: r for r in store.records()}
    assert set(after) == set(before)  # the same training keys
    for key, record in after.items():
        assert record.curves == before[key].curves
        assert record.metrics["target_acc"] == before[key].metrics["target_acc"]
        assert not record.robustness and before[key].robustness
        assert record.teachers[0]["below_floor"] == (record.teachers[0]["source_accuracy"] < 0.9)
    assert (directory / "training.json").stat().st_mtime_ns == trained


def test_xdkd_evaluate_adds_a_corruption_to_finished_runs_without_training(copy, capsys):
    _, store = copy
    directory = student_dir(store)
    trained = (directory / "training.json").stat().st_mtime_ns
    argv = ["evaluate", str(store.root), "--set", "corruptions=[gaussian_noise, fog]"]
    assert main([*argv, "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    assert "evaluating 3 trained runs" in capsys.readouterr().out
    for record in store.records():
        cells = record.robustness["items"]["mnist"]["cells"]
        assert {"fog/1", "gaussian_noise/5"} <= set(cells)
    assert (directory / "training.json").stat().st_mtime_ns == trained


def test_a_diverging_run_fails_with_the_reason(copy):
    suite, store = copy
    lr = ["--set", "student_recipe.lr=1000000", "--set", "methods=[dkd]"]
    assert run(suite, store.root, *lr) == 1
    errors = [e["error"] for e in store.errors()]
    assert len(errors) == 1 and "lower the learning rate (recipe lr=1000000.0)" in errors[0]
    assert errors[0].startswith("dkd lenet optdigits→mnist"), errors[0]  # the student diverged


def test_the_divergence_rule_needs_no_nan_and_spares_a_learner_at_chance():
    import torch

    from benchmark.run.train import divergence

    rising = torch.linspace(2.3, 9e15, 100)
    message = divergence(rising, accuracy=0.1, nll=7e15, num_classes=10, label="run", lr=1e6)
    assert (
        message
        and "diverged" in message
        and "lower the learning rate (recipe lr=1000000.0)" in message
    )
    assert "ended at chance accuracy (10.0% for 10 classes)" in message
    falling = torch.linspace(2.3, 2.2, 100)  # a method that learns nothing, slowly: no divergence
    assert divergence(falling, accuracy=0.1, nll=2.2, num_classes=10, label="run", lr=1e-3) is None
    assert divergence(rising, accuracy=0.9, nll=0.3, num_classes=10, label="run", lr=1e6) is None
    # a binary task: 70% is a learner (1.5 / classes would call it chance), 52% is not
    assert divergence(rising, accuracy=0.7, nll=0.6, num_classes=2, label="run", lr=1e6) is None
    assert divergence(rising, accuracy=0.52, nll=7e15, num_classes=2, label="run", lr=1e6)


def test_a_full_disk_is_recorded_as_such(copy, monkeypatch):
    suite, store = copy

    def full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "save_torch", full)
    assert run(suite, store.root, "--set", "methods=[dkd]") == 1  # its weights cannot be saved
    (error,) = store.errors()
    assert error["error"].startswith("ENOSPC (No space left on device): ")
    assert "free some disk space" in error["error"]


def test_failure_reasons_name_the_signal_and_memory_only_when_the_oom_killer_acted():
    assert describe_exit(-signal.SIGKILL, 3, 3) == "the worker process was killed by SIGKILL"
    assert "out of memory (OOM killer)" in describe_exit(-signal.SIGKILL, 3, 4)
    assert describe_exit(-signal.SIGSEGV, None, None) == "the worker process was killed by SIGSEGV"
    assert describe_exit(3, None, None) == "the worker process exited with status 3"
    assert describe_failure(MemoryError()).startswith("out of memory")
    assert describe_failure(ValueError("x")) == "ValueError: x"


@pytest.mark.long
def test_ctrl_c_ends_a_sweep_with_one_line_and_no_traceback(copy, tmp_path):
    suite, store = copy  # its teacher is trained: a run starts at once
    command = [sys.executable, "-m", "benchmark.cli", "run", str(suite), "--no-progress"]
    command += ["--out", str(store.root), "--results", str(tmp_path / "results")]
    command += ["--set", "methods=[dkd]", "--set", "student_recipe.epochs=30"]
    driver = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job starts with SIGINT ignored, and Python then installs no
        # handler: the driver gets Ctrl-C's default, as a terminal gives it, however pytest ran
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(store.root.glob("runs/*/running.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, (out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert "xdkd: interrupted; finished records are kept, rerun to resume" in err


@pytest.mark.parametrize("rule", ["oracle", "target-entropy", "last", "source-val"])
def test_every_selection_rule_reports_from_the_same_records(tiny_sweep, tmp_path, rule):
    runs = tiny_sweep / "runs"
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out), "--selection", rule]) == 0
    caption = (out / "leaderboard.md").read_text()
    assert ("ORACLE" in caption) == (rule == "oracle")
    assert ("Not ranked" in caption) == (rule == "oracle")
