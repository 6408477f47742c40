"""Executors: the scheduler's order, run claims, the local worker pool under SIGKILL, two
drivers on one directory, and the Slurm backend (submitit's debug executor, and the sbatch
files it would submit, captured by a stand-in `sbatch`)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.errors import XdkdError
from benchmark.executors import plan as plan_module
from benchmark.executors.local import worker_setups
from benchmark.executors.plan import Scheduler
from benchmark.executors.tasks import Result, Task, execute
from benchmark.locks import file_lock
from benchmark.run.harness import Harness
from benchmark.store import RunStore
from benchmark.suite.expansion import expand
from benchmark.suite.loader import load_suite
from benchmark.suite.metrics import metric
from benchmark.suite.specs import RunRecord

SMALL = {"corruptions": ["gaussian_noise"], "corruption_images": 50}


def task(kind: str, key: str, teacher_key: str) -> Task:
    return Task(kind, key, (teacher_key,), f"{kind} {key}", "{}")


def test_scheduler_hands_out_teachers_first_then_runs_of_done_teachers_by_affinity():
    t1, t2 = task("teacher", "t1", "t1"), task("teacher", "t2", "t2")
    r1, r2, r3 = task("run", "r1", "t1"), task("run", "r2", "t2"), task("run", "r3", "t1")
    scheduler = Scheduler([t1, t2], [r1, r2, r3])
    assert scheduler.next() is t1 and scheduler.next() is t2
    assert scheduler.next() is None  # no run starts while its teacher trains
    scheduler.report(t1, Result("t1", "done"))
    assert scheduler.next(("t2",)) is r1  # t1 is done: its runs go while t2 trains
    assert scheduler.next() is r3
    assert scheduler.next() is None  # r2 waits for t2
    scheduler.report(t2, Result("t2", "done"))
    scheduler.requeue(r1)  # its worker died: back to the front
    assert scheduler.next(("t2",)) is r2  # the worker that holds t2 gets t2's run
    assert scheduler.next(("t9",)) is r1  # no match: the first in order
    assert scheduler.queued == 0 and not scheduler.finished


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_every_run_gets_the_same_threads_and_the_cores_this_process_may_use_set_the_workers(
    monkeypatch,
):
    """Under taskset or a Slurm cpuset the node's core count is not what the job may use; the
    thread count of a run never depends on how many workers share the cores."""
    cores = sorted(os.sched_getaffinity(0))
    monkeypatch.delenv("XDKD_THREADS", raising=False)
    try:
        os.sched_setaffinity(0, cores[:1])
        assert [s.threads for s in worker_setups(torch.device("cpu"), None, 1)] == [1]
        assert [s.threads for s in worker_setups(torch.device("cpu"), 2, 1)] == [1, 1]
    finally:
        os.sched_setaffinity(0, cores)
    assert [s.threads for s in worker_setups(torch.device("cpu"), None, 1)] == [1] * len(cores)
    assert [s.threads for s in worker_setups(torch.device("cpu"), 1, 1)] == [1]
    monkeypatch.setenv("XDKD_THREADS", "2")
    assert [s.threads for s in worker_setups(torch.device("cpu"), 3, 1)] == [2, 2, 2]
    assert len(worker_setups(torch.device("cpu"), None, 1)) == max(1, len(cores) // 2)
    monkeypatch.setenv("XDKD_THREADS", "two")
    with pytest.raises(XdkdError, match="XDKD_THREADS='two' is not a thread count"):
        worker_setups(torch.device("cpu"), None, 1)


TRAINED = ("curves", "selections", "selected", "per_domain", "per_class", "device")
MEASURED = ("s", "ms", "MB")  # the units of wall times, latencies and memory: machine state


def numbers(record: RunRecord) -> dict:
    """What a record says about the model: everything but wall times, latency, memory."""
    metrics = {k: v for k, v in record.metrics.items() if metric(k).unit not in MEASURED}
    return {field: getattr(record, field) for field in TRAINED} | record.robustness | metrics


@pytest.mark.long
def test_one_spec_gives_one_record_whatever_the_number_of_workers(tiny_suite, tiny_sweep, tmp_path):
    """Gradient reversal is the method rounding moved most (up to 6 points between one
    2-thread worker and two 1-thread ones): its runs under --workers 1, --workers 2 (two runs
    at once) and in this process must agree bit for bit."""
    suite = tiny_suite(methods=["teacher", "source_only", "adversarial_kd"], **SMALL)
    records = {}
    for workers in ("1", "2", "0"):
        out = tmp_path / f"workers-{workers}"
        shutil.copytree(tiny_sweep / "runs" / "teachers", out / "teachers")
        assert main(run_argv(suite, out, "--workers", workers)) == 0
        records[workers] = {r.key: numbers(r) for r in RunStore(out).records()}
    assert len(records["1"]) == 3
    assert records["1"] == records["2"] == records["0"]
    assert all("1 threads" in r["device"] for r in records["1"].values())


def test_a_run_claimed_elsewhere_comes_back_until_it_is_recorded(monkeypatch):
    monkeypatch.setattr(plan_module, "BUSY_RETRY_S", 0.2)
    run = task("run", "r1", "t1")
    scheduler = Scheduler([], [run])
    assert scheduler.next() is run
    scheduler.report(run, Result("r1", "busy"))
    assert scheduler.next() is None and not scheduler.finished
    time.sleep(0.25)
    assert scheduler.next() is run
    scheduler.report(run, Result("r1", "recorded"))
    assert scheduler.finished


def test_a_claimed_run_is_not_run_twice(tiny_suite, tmp_path):
    suite = load_suite(tiny_suite(methods=["source_only"]))
    (spec,) = expand(suite)
    store = RunStore(tmp_path)
    harness = Harness(store, torch.device("cpu"), progress=False)
    with file_lock(store.claim_path(spec.key)):  # another process is running it
        task = Task.for_run(spec, suite.evaluation)
        assert execute(harness, task) == Result(spec.key, "busy")
        assert store.is_running(spec.key)
    assert not store.has_record(spec) and not store.is_running(spec.key)


def run_argv(suite: Path, out: Path, *extra: str) -> list[str]:
    argv = ["run", str(suite), "--out", str(out), "--results", str(out / "results")]
    return [*argv, "--device", "cpu", "--no-progress", *extra]


def xdkd_run(suite: Path, out: Path, *extra: str) -> subprocess.Popen:
    """A driver in a process of its own."""
    command = [sys.executable, "-m", "benchmark.cli", *run_argv(suite, out, *extra)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_here(suite: Path, out: Path) -> int:
    """A driver in this test's process, running its tasks itself (no start-up of torch)."""
    return main(run_argv(suite, out, "--workers", "0"))


def spawned_workers(driver: int) -> list[int]:
    """Pids of the driver's worker processes (multiprocessing spawn children)."""
    pids = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat_file.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat_file.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == driver and b"spawn_main" in command:
            pids.append(int(stat_file.parent.name))
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_starting_worker_imports_nothing_heavy_before_it_is_bound_to_its_driver():
    """A spawned worker unpickles its entry point and its setup, then asks to die with its
    driver: if that pulled in torch first, a driver killed during those seconds of imports
    would leave the worker running until they ended."""
    code = (
        "import pickle, sys\n"
        "from benchmark.executors.worker_start import WorkerSetup, start\n"
        "pickle.loads(pickle.dumps((start, WorkerSetup('cpu', None, 1))))\n"
        "print(sorted(m for m in ('torch', 'numpy', 'benchmark.run.harness') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def check_one_valid_record_per_spec(suite: Path, out: Path) -> list[RunRecord]:
    specs = expand(load_suite(suite))
    records = RunStore(out).records()  # every record.json parses as a RunRecord
    assert sorted(record.key for record in records) == sorted(spec.key for spec in specs)
    for spec in specs:
        assert len(list((out / "runs" / spec.key).glob("record*.json"))) == 1
    return records


@pytest.mark.long
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc")
def test_sigkill_of_driver_and_workers_at_random_moments_loses_and_repeats_nothing(
    tiny_suite, tiny_sweep, tmp_path
):
    suite = tiny_suite(**SMALL)
    out = tmp_path / "runs"
    shutil.copytree(tiny_sweep / "runs" / "teachers", out / "teachers")  # saved: never again
    (saved,) = (out / "teachers").glob("*/teacher.json")
    teacher_json = saved.read_text()
    rng = random.Random(7)
    for _ in range(2):
        driver = xdkd_run(suite, out, "--workers", "2")
        time.sleep(rng.uniform(3, 9))
        workers = spawned_workers(driver.pid)
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
        time.sleep(rng.uniform(0.5, 5))
        workers = spawned_workers(driver.pid)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 10
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(alive, workers)), "workers outlived their driver"
        assert saved.read_text() == teacher_json, "a saved teacher was trained again"
    # a third driver, this test's process, finishes what the killed ones left
    assert run_here(suite, out) == 0
    records = check_one_valid_record_per_spec(suite, out)
    assert saved.read_text() == teacher_json, "a saved teacher was trained again"
    assert len({record.teachers[0]["train_wall_time_s"] for record in records}) == 1
    assert main(["status", str(out)]) == 0


@pytest.mark.long
def test_two_drivers_on_one_directory_share_the_work(tiny_suite, tmp_path, capsys):
    suite = tiny_suite(methods=["teacher", "source_only"], **SMALL)
    out = tmp_path / "runs"
    # each runs its tasks itself (the other driver and this test process, which pays no second
    # start-up of torch): the claims are the store's, whatever runs the task
    other = xdkd_run(suite, out, "--workers", "0")
    first_line = other.stdout.readline()  # printed once torch is up: both plan at once now
    assert other.poll() is None, "the other driver ended before this one started"
    here = run_here(suite, out)
    outputs = [capsys.readouterr().out, first_line + other.communicate(timeout=300)[0]]
    assert [here, other.returncode] == [0, 0], outputs
    records = check_one_valid_record_per_spec(suite, out)
    done = [int(line.split()[0]) for o in outputs for line in o.splitlines() if "runs done" in line]
    assert sum(done) == len(records) == 2  # every run ran once, in one driver or the other
    assert len({record.teachers[0]["train_wall_time_s"] for record in records}) == 1


def test_status_reports_done_failed_running_and_queued(tiny_suite, tmp_path, capsys):
    specs = expand(load_suite(tiny_suite(methods=["source_only", "kd", "teacher"])))
    store = RunStore(tmp_path)
    for spec in specs:
        store.queue(spec)
    store.write_error(specs[0], ValueError("loss 'kd' became nan at step 3"))
    with file_lock(store.claim_path(specs[1].key)):
        assert main(["status", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path}: 3 runs: 0 done, 1 failed, 1 running, 1 queued" in out
    assert f"failed   {specs[0].key} source_only lenet optdigits→mnist [uda] seed 0: " in out
    assert "ValueError: loss 'kd' became nan at step 3" in out
    assert "--retry-failed" in out
    assert main(["status", str(tmp_path), "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "1 failed runs cleared" in out and "0 failed, 0 running, 3 queued" in out
    assert (store.run_dir(specs[0].key) / "error.previous.json").is_file()
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    assert "is not a runs directory" in capsys.readouterr().err


@pytest.mark.long
def test_slurm_backend_runs_the_sweep_through_submitits_debug_executor(tiny_suite, tmp_path):
    suite = tiny_suite(methods=["teacher", "source_only"], **SMALL)
    out = tmp_path / "runs"
    args = ["run", str(suite), "--out", str(out), "--results", str(tmp_path / "results")]
    args += ["--executor", "slurm", "--slurm-cluster", "debug", "--device", "cpu"]
    assert main([*args, "--no-progress"]) == 0
    check_one_valid_record_per_spec(suite, out)
    assert (out / "slurm").is_dir()  # submitit's job folders, beside the runs


FAKE_SBATCH = """#!/bin/sh
count=$(ls "$SBATCH_LOG" | wc -l)
cp "$1" "$SBATCH_LOG/$count.sh"
echo "Submitted batch job $((4242 + count))"
"""


def test_slurm_sbatch_files_carry_the_requested_resources(tiny_suite, tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir(), log.mkdir()
    for name, script in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\nexit 1\n")):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(log))
    suite = tiny_suite(methods=["source_only", "kd"], seeds=[0, 1])
    out = tmp_path / "runs"
    args = ["run", str(suite), "--out", str(out), "--executor", "slurm", "--detach"]
    args += ["--results", str(tmp_path / "results")]
    args += ["--slurm-partition", "gpu", "--slurm-account", "proj7", "--slurm-time", "90"]
    args += ["--slurm-gpus-per-task", "2", "--slurm-cpus-per-task", "6"]
    args += ["--slurm-array-parallelism", "3", "--slurm-mem-gb", "40", "--no-progress"]
    assert main(args) == 0
    teachers, runs = (log / "0.sh").read_text(), (log / "1.sh").read_text()
    for script in (teachers, runs):
        for line in (
            "#SBATCH --partition=gpu",
            "#SBATCH --account=proj7",
            "#SBATCH --time=90",
            "#SBATCH --gpus-per-node=2",
            "#SBATCH --cpus-per-task=6",
            "#SBATCH --mem=40GB",
            "#SBATCH --ntasks-per-node=1",
            "#SBATCH --job-name=xdkd-tiny",
            "#SBATCH --signal=USR2@90",  # the warning submitit turns into a requeue
        ):
            assert line in script.splitlines(), (line, script)
    assert "#SBATCH --array=0-1%2" in teachers  # a teacher per seed
    # two methods x two seeds: a cohort per seed, one split in two to fill the 3 slots
    assert "#SBATCH --array=0-2%3" in runs
    assert "#SBATCH --dependency=afterany:4242" in runs  # after the teacher array
    assert "--dependency" not in teachers
    assert len(list((out / "runs").glob("*/spec.json"))) == 4  # queued in the store
    assert not list((out / "runs").glob("*/record.json"))


def test_slurm_without_a_cluster_says_so(tiny_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    args = ["run", str(tiny_suite()), "--out", str(tmp_path / "runs"), "--executor", "slurm"]
    args += ["--results", str(tmp_path / "results")]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "xdkd: error: --executor slurm: no Slurm here (srun is not on the PATH); run on a "
        "Slurm login node, or try the same path locally with --slurm-cluster local"
    )


def test_executor_options_are_checked(tiny_suite, capsys):
    assert main(["run", str(tiny_suite()), "--workers", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "xdkd: error: --workers -1: give 0 (in this process) or more"
