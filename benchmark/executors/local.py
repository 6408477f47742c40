"""The local executor: a pool of long-lived worker processes on this machine.

Each worker is a spawned process that builds its harness once (CUDA initialised once, its
teachers and device-resident data kept across runs) and takes one task at a time from its
own queue. With GPUs there are `jobs_per_gpu` workers per visible GPU, each pinned to its GPU
through CUDA_VISIBLE_DEVICES; on CPU one worker per `run_threads()` cores (one per core by
default), each run on that fixed number of threads however many workers there are. Workers
die with the driver (PR_SET_PDEATHSIG, requested in `benchmark.executors.worker_start` before torch
is imported, and a parent check while idle), so a killed driver leaves no orphan behind, even
one still starting; a worker that dies mid-run is replaced and its task handed out
again, and a task that kills two workers is recorded as failed.

`workers=0` runs every task in the driver process itself, with per-run progress bars: the
way to debug a method.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

import torch

from benchmark.errors import XdkdError
from benchmark.executors.plan import Scheduler, SweepPlan, SweepProgress, SweepSummary
from benchmark.executors.tasks import Result, Task, execute
from benchmark.executors.worker_start import WorkerSetup, start
from benchmark.failures import describe_exit, oom_kills
from benchmark.machine import run_threads, usable_cpus
from benchmark.run.harness import Harness
from benchmark.store import RunStore
from benchmark.suite.specs import RunSpec, TeacherSpec

POLL_S = 0.5
MAX_WORKER_DEATHS = 2  # per task: a task that kills this many workers is recorded as failed


def worker_setups(
    device: torch.device, workers: int | None, jobs_per_gpu: int
) -> list[WorkerSetup]:
    """Default: one worker per visible GPU times `jobs_per_gpu`; on CPU, as many workers as
    the cores hold runs of `run_threads()` threads each. The thread count is every run's,
    whatever the number of workers, so that --workers changes no number."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and device.index is not None:
        gpus_used = [device.index]
    else:
        gpus_used = list(range(gpus))
    threads = run_threads()
    cpu_workers = max(1, usable_cpus() // threads)
    count = workers if workers is not None else max(1, len(gpus_used) * jobs_per_gpu)
    count = count if workers is not None or gpus_used else cpu_workers
    if not gpus_used:
        return [WorkerSetup("cpu", None, threads) for _ in range(count)]
    return [WorkerSetup("cuda:0", gpus_used[i % len(gpus_used)], threads) for i in range(count)]


def worker_main(
    driver: int,
    root: str,
    setup: WorkerSetup,
    retry_failed: bool,
    tasks: multiprocessing.Queue,
    results,
) -> None:
    """The worker's loop (entered through `benchmark.executors.worker_start.start`, which has
    already bound the process to its driver's life)."""
    from benchmark.provenance import resolve_device

    harness = Harness(RunStore(Path(root)), resolve_device(setup.device), progress=False)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != driver:
                return
            continue
        if task is None or os.getppid() != driver:
            return
        results.put((task.key, execute(harness, task, retry_failed)))


class Worker:
    def __init__(
        self, index: int, setup: WorkerSetup, context, root: Path, retry_failed: bool, results
    ) -> None:
        self.index = index
        self.setup = setup
        self.tasks = context.Queue()
        self.current: Task | None = None
        self.teacher_keys: tuple[str, ...] | None = None
        self.oom_kills = oom_kills()
        self.process = self._start(context, root, retry_failed, results)

    def _start(self, context, root: Path, retry_failed: bool, results) -> BaseProcess:
        process = context.Process(
            target=start,
            args=(os.getpid(), str(root), self.setup, retry_failed, self.tasks, results),
            name=f"xdkd-worker-{self.index}",
            daemon=False,  # a worker may start DataLoader workers to stream big domains
        )
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if self.setup.gpu is not None:  # the child inherits the environment at spawn time
            os.environ["CUDA_VISIBLE_DEVICES"] = str(self.setup.gpu)
        try:
            process.start()
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        return process

    def give(self, task: Task) -> None:
        self.current = task
        self.tasks.put(task)


def run_in_process(
    store: RunStore,
    plan: SweepPlan,
    device: torch.device,
    retry_failed: bool,
    progress: bool,
    cohort_size: int,
) -> SweepSummary:
    harness = Harness(store, device, progress=progress)
    scheduler = Scheduler(*plan.tasks(store, cohort_size, workers=1))
    bar = SweepProgress(plan, progress)
    teacher_keys = None
    while not scheduler.finished:
        task = scheduler.next(teacher_keys)
        if task is None:  # only runs held by other processes are left
            time.sleep(POLL_S)
            continue
        bar.update(scheduler)
        result = execute(harness, task, retry_failed)
        scheduler.report(task, result)
        bar.finished(task, result)
        teacher_keys = task.teacher_keys
    return bar.close(scheduler)


def run_pool(
    store: RunStore,
    plan: SweepPlan,
    setups: list[WorkerSetup],
    retry_failed: bool,
    progress: bool,
    cohort_size: int,
) -> SweepSummary:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        Worker(i, setup, context, store.root, retry_failed, results)
        for i, setup in enumerate(setups)
    ]
    scheduler = Scheduler(*plan.tasks(store, cohort_size, len(setups)))
    bar = SweepProgress(plan, progress)
    deaths: dict[str, int] = {}
    try:
        while not scheduler.finished:
            for worker in workers:
                if worker.current is None:
                    task = scheduler.next(worker.teacher_keys)
                    if task is not None:
                        worker.give(task)
            bar.update(scheduler)
            _collect(results, workers, scheduler, bar, wait=POLL_S)
            for index, worker in enumerate(workers):
                if not worker.process.is_alive():
                    _collect(results, workers, scheduler, bar, wait=0)  # its last results
                    workers[index] = Worker(
                        worker.index, worker.setup, context, store.root, retry_failed, results
                    )
                    _reassign(worker, store, scheduler, bar, deaths)
    except KeyboardInterrupt:  # stop at once: checkpoints and records keep what was done
        for worker in workers:
            worker.process.kill()
        bar.bar.close()
        raise
    finally:
        for worker in workers:
            if worker.process.is_alive():
                worker.tasks.put(None)
        for worker in workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
    return bar.close(scheduler)


def _collect(
    results, workers: list[Worker], scheduler: Scheduler, bar: SweepProgress, wait: float
) -> None:
    """Every result sent so far, waiting up to `wait` seconds for the first."""
    while True:
        try:
            key, result = results.get(timeout=wait) if wait else results.get_nowait()
        except queue.Empty:
            return
        _finish(key, result, workers, scheduler, bar)
        wait = 0


def _finish(
    key: str, result: Result, workers: list[Worker], scheduler: Scheduler, bar: SweepProgress
) -> None:
    worker = next((w for w in workers if w.current is not None and w.current.key == key), None)
    if worker is None:
        return
    task, worker.current = worker.current, None
    worker.teacher_keys = task.teacher_keys
    scheduler.report(task, result)
    bar.finished(task, result)


def _reassign(
    dead: Worker, store: RunStore, scheduler: Scheduler, bar: SweepProgress, deaths: dict
) -> None:
    """The dead worker's task goes back to the queue, or is recorded as failed if it has
    now killed MAX_WORKER_DEATHS workers; a cohort that did is split into its runs, each
    then given its own MAX_WORKER_DEATHS tries (the cohort's memory may have been the
    cause)."""
    task = dead.current
    if task is None:
        return
    deaths[task.key] = deaths.get(task.key, 0) + 1
    if deaths[task.key] < MAX_WORKER_DEATHS or task.kind == "cohort":
        scheduler.requeue(task, split=deaths[task.key] >= MAX_WORKER_DEATHS)
        return
    why = describe_exit(dead.process.exitcode, dead.oom_kills, oom_kills())
    reason = f"{why}, {deaths[task.key]} times while running it"
    error = XdkdError(reason)
    if task.kind == "run":
        store.write_error(RunSpec.model_validate_json(task.spec_json), error)
    else:
        store.write_teacher_error(TeacherSpec.model_validate_json(task.spec_json), error)
    result = Result(task.key, "failed", reason)
    scheduler.report(task, result)
    bar.finished(task, result)
