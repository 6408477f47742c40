"""A run killed mid-training resumes from its last epoch's checkpoint and reaches exactly the
numbers it would have reached uninterrupted; the checkpoint is gone once the record is written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.cli import main

EPOCHS = 3


def run_argv(suite: Path, out: Path) -> list[str]:
    argv = ["run", str(suite), "--out", str(out), "--results", str(out / "results")]
    return argv + ["--device", "cpu", "--no-progress", "--workers", "0"]


def run_here(suite: Path, out: Path) -> None:
    """An `xdkd run` in this process (no second start-up of torch to pay)."""
    assert main(run_argv(suite, out)) == 0


def run_to_kill(suite: Path, out: Path) -> subprocess.Popen:
    """An `xdkd run` in a process of its own (`xdkd_process`)."""
    return xdkd_process(run_argv(suite, out))


def xdkd_process(argv: list[str]) -> subprocess.Popen:
    """`xdkd ARGV` in a process of its own, with this process's thread count: the same
    threads, the same sums, the same numbers."""
    command = [sys.executable, "-m", "benchmark.cli", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def checkpointed_epoch(out: Path) -> int:
    """The epoch of a student checkpoint written so far (0: none yet)."""
    for path in out.glob("runs/*/checkpoint.pt"):
        try:
            return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
        except Exception:  # being replaced right now
            return 0
    return 0


def only_record(out: Path) -> dict:
    (path,) = out.glob("runs/*/record.json")
    return json.loads(path.read_text())


@pytest.mark.long
def test_a_run_killed_mid_training_resumes_to_the_same_numbers(tiny_suite, tmp_path, capsys):
    recipe = {"epochs": EPOCHS, "batch_size": 64, "lr": 0.003}
    suite = tiny_suite(
        pairs=[{"source": "optdigits", "target": "mnist"}],
        methods=["mean_teacher"],  # EMA copy, its own generator, dropout: every kind of state
        student_recipe=recipe,
        corruptions=["gaussian_noise"],
        corruption_images=50,
        heldout=["syndigits"],
    )
    whole = tmp_path / "whole"
    run_here(suite, whole)
    killed = tmp_path / "killed"
    shutil.copytree(whole / "teachers", killed / "teachers")  # its student trains at once
    run = run_to_kill(suite, killed)
    deadline = time.monotonic() + 300
    while checkpointed_epoch(killed) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be killed mid-training"
    run.send_signal(signal.SIGKILL)
    run.wait()
    epoch = checkpointed_epoch(killed)
    assert 2 <= epoch < EPOCHS
    capsys.readouterr()
    run_here(suite, killed)
    output = capsys.readouterr()
    assert f"epoch {epoch} done" in output.out + output.err
    a, b = only_record(whole), only_record(killed)
    assert b["training"]["resumed_epochs"] == epoch and a["training"]["resumed_epochs"] == 0
    assert a["curves"] == b["curves"]
    assert a["metrics"]["target_acc"] == b["metrics"]["target_acc"]
    assert a["per_domain"] == b["per_domain"] and a["selected"] == b["selected"]
    assert a["robustness"]["items"] == b["robustness"]["items"]
    assert not list(killed.glob("runs/*/checkpoint.pt")), "the checkpoint outlived the record"
