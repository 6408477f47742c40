"""`xdkd bench --job sweep`: one small method-comparison sweep timed solo and as cohorts.

The sweep is what a leaderboard is made of, run through the suite's own executor (the local
worker pool, records, evaluation): one embedded pair (mnist→mnistm), a teacher per seed,
SWEEP_METHODS (logit, feature and domain-aware families), 2 seeds and a short budget. Its
teachers are trained first, untimed, and copied into two fresh run directories; the sweep
then runs in one with `--cohort-size 1` (every run alone, as torchdistill, mdistiller and
DomainBed run them) and in the other as cohorts (`benchmark.executors.cohorts`), and each
is timed from start to last record. The records of the two must agree number for number;
the bench says so, or which run differed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmark.executors.cohorts import auto_cohort_size
from benchmark.executors.local import worker_setups
from benchmark.executors.sweep import ExecutorOptions, run_sweep
from benchmark.provenance import device_description
from benchmark.store import RunStore
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite
from benchmark.suite.metrics import same_results
from benchmark.suite.specs import RunRecord

SWEEP_METHODS = (
    "source_only",
    "kd",
    "dkd",
    "kd_ls",
    "at",
    "fitnet",
    "rkd",
    "coral_kd",
    "mmd_kd",
    "adversarial_kd",
)
SWEEP_SEEDS = (0, 1)


def sweep_suite(teacher: str, epochs: int) -> dict:
    """The bench's suite: mnist→mnistm, `teacher` (trained 2 epochs), a LeNet student
    trained `epochs`, clean evaluation only (no corruption: the bench times training)."""
    return {
        "name": "bench-sweep",
        "pairs": [{"source": "mnist", "target": "mnistm"}],
        "teachers": [teacher],
        "students": ["lenet"],
        "methods": list(SWEEP_METHODS),
        "seeds": list(SWEEP_SEEDS),
        "teacher_floor": 0.5,
        "corruptions": [],
        "teacher_recipe": {"epochs": 2, "batch_size": 128, "lr": 0.002, "schedule": "onecycle"},
        "student_recipe": {"epochs": epochs, "batch_size": 128, "lr": 0.002},
    }


def _timed_sweep(suite_path: Path, out: Path, device: torch.device, cohort_size: int) -> float:
    suite = load_suite(suite_path)
    options = ExecutorOptions(progress=False, cohort_size=cohort_size)
    started = time.perf_counter()
    summary = run_sweep(RunStore(out), expand(suite), suite.evaluation, device, options)
    seconds = time.perf_counter() - started
    if summary.failed:
        key, label, reason = summary.failed[0]
        raise RuntimeError(f"bench sweep: {label} failed: {reason}")
    return seconds


def images_per_step(record: RunRecord) -> int:
    """A step's images: a batch of each source and of each unlabelled target."""
    domains = len(record.spec.setting.sources) + len(record.spec.setting.targets)
    return record.spec.student_recipe.batch_size * domains


def sweep_bench(
    teacher: str, device: torch.device, epochs: int, cohort_size: int | str, keep: Path | None
) -> dict:
    """Time the sweep solo and as cohorts of `cohort_size` (`auto`: as `xdkd run` chooses;
    module docstring); the figures as a dict."""
    directory = Path(tempfile.mkdtemp(prefix="xdkd-bench-sweep-")) if keep is None else keep
    try:
        suite_path = directory / "suite.yaml"
        suite = sweep_suite(teacher, epochs)
        teachers_only = {**suite, "methods": ["teacher"]}
        suite_path.write_text(yaml.safe_dump(teachers_only, sort_keys=False))
        _timed_sweep(suite_path, directory / "teachers-run", device, 1)
        suite_path.write_text(yaml.safe_dump(suite, sort_keys=False))
        if cohort_size == "auto":
            cohort_size, how = auto_cohort_size(expand(load_suite(suite_path)), device)
            print(f"--cohort-size auto: {how}", flush=True)
        seconds = {}
        for name, size in (("solo", 1), ("cohort", cohort_size)):
            out = directory / name
            shutil.copytree(directory / "teachers-run" / "teachers", out / "teachers")
            seconds[name] = _timed_sweep(suite_path, out, device, size)
        solo = {r.key: r for r in RunStore(directory / "solo").records()}
        cohort = {r.key: r for r in RunStore(directory / "cohort").records()}
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    runs = len(solo)
    per_run = []
    for key, alone in sorted(
        solo.items(), key=lambda kv: (kv[1].spec.seed, kv[1].spec.method.name)
    ):
        together = cohort[key]
        images = alone.training["steps"] * images_per_step(alone)
        share = together.training.get("cohort", {})
        cohort_seconds = share.get("train_wall_time_s", together.training["train_wall_time_s"])
        per_run.append(
            {
                "method": alone.spec.method.name,
                "seed": alone.spec.seed,
                "solo_img_s": images / alone.training["train_wall_time_s"],
                "cohort_img_s": images / (cohort_seconds / share.get("size", 1)),
                "cohort_size": share.get("size", 1),
                "identical": same_results(alone, together),
            }
        )
    solo_runs_h = runs / (seconds["solo"] / 3600)
    cohort_runs_h = runs / (seconds["cohort"] / 3600)
    return {
        "job": "sweep",
        "teacher": teacher,
        "student": "lenet",
        "pair": "mnist→mnistm",
        "methods": list(SWEEP_METHODS),
        "seeds": list(SWEEP_SEEDS),
        "student_epochs": epochs,
        "cohort_size": cohort_size,
        "runs": runs,
        "sweep_solo_s": seconds["solo"],
        "sweep_cohort_s": seconds["cohort"],
        "sweep_solo_runs_h": solo_runs_h,
        "sweep_cohort_runs_h": cohort_runs_h,
        "sweep_ratio": cohort_runs_h / solo_runs_h,
        "identical_records": all(row["identical"] for row in per_run),
        "per_run": per_run,
        "device": device_description(device),
        "workers": [
            f"{setup.device}, {setup.threads} thread(s)" for setup in worker_setups(device, None, 1)
        ],
    }
