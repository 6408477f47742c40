"""The Slurm executor: submitit job arrays, one array task per teacher or run.

Teachers are one array and runs another that starts after it (`--dependency=afterany`, so a
failed teacher still lets its runs record why they failed). Every task reads and writes the
run directories on the shared file system and claims its run with the same kernel lock as
the local workers (flock; NFSv4 and Lustre mounted with flock support honour it across
nodes), so results never travel through submitit's pickles and a dead driver loses
nothing: rerunning the same command resubmits only what has no record. A task that is
preempted or reaches its time limit is requeued by submitit (up to `max_requeues` times)
and resumes its run from the last epoch's checkpoint.

`cluster` other than "slurm" uses submitit's own `local` (subprocesses) or `debug`
(in-process) executors: the same code path, without a cluster, for tests and dry runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from benchmark.errors import XdkdError
from benchmark.executors.plan import SweepPlan, SweepSummary
from benchmark.executors.tasks import Task, execute
from benchmark.store import RunStore

POLL_S = 10.0


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 240
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int | None = None
    array_parallelism: int = 32
    account: str | None = None
    max_requeues: int = 3
    cluster: Literal["slurm", "local", "debug"] = "slurm"
    detach: bool = False


def executor_parameters(options: SlurmOptions, job_name: str) -> dict[str, Any]:
    """submitit's parameters: the generic ones, then the Slurm-only ones (prefixed)."""
    parameters: dict[str, Any] = {
        "name": job_name,
        "timeout_min": options.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": options.gpus_per_task,
        "cpus_per_task": options.cpus_per_task,
        "slurm_array_parallelism": options.array_parallelism,
    }
    if options.mem_gb is not None:
        parameters["mem_gb"] = options.mem_gb
    if options.partition is not None:
        parameters["slurm_partition"] = options.partition
    if options.account is not None:
        parameters["slurm_account"] = options.account
    return parameters


class StoreTask:
    """What one array task runs: a task of the sweep, on whatever node it lands, against
    the store on the shared file system. `checkpoint` makes submitit requeue it when the
    task is preempted or times out."""

    def __init__(self, root: str, retry_failed: bool) -> None:
        self.root = root
        self.retry_failed = retry_failed

    def __call__(self, task: Task) -> str:
        from benchmark.provenance import resolve_device
        from benchmark.run.harness import Harness

        harness = Harness(RunStore(Path(self.root)), resolve_device("auto"), progress=False)
        result = execute(harness, task, self.retry_failed)
        return f"{result.outcome} {task.label} {result.reason}".strip()

    def checkpoint(self, task: Task) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, task)


def run_slurm(
    store: RunStore,
    plan: SweepPlan,
    options: SlurmOptions,
    retry_failed: bool,
    progress: bool,
    cohort_size: int,
) -> SweepSummary:
    try:
        import submitit
    except ImportError:
        raise XdkdError("--executor slurm needs submitit: pip install submitit") from None
    summary = SweepSummary(recorded=plan.recorded, not_retried=len(plan.not_retried))
    teachers, runs = plan.tasks(store, cohort_size, workers=options.array_parallelism)
    if not runs:
        return summary
    folder = store.root / "slurm"
    try:
        executor = submitit.AutoExecutor(
            folder=folder / "%j",
            cluster=options.cluster,
            slurm_max_num_timeout=options.max_requeues,
        )
    except RuntimeError:
        raise XdkdError(
            "--executor slurm: no Slurm here (srun is not on the PATH); run on a Slurm login "
            "node, or try the same path locally with --slurm-cluster local"
        ) from None
    executor.update_parameters(**executor_parameters(options, f"xdkd-{plan.specs[0].suite}"))
    task = StoreTask(str(store.root), retry_failed)
    jobs = []
    if teachers:
        teacher_jobs = executor.map_array(task, teachers)
        jobs += teacher_jobs
        array_id = str(teacher_jobs[0].job_id).split("_")[0]
        if options.cluster == "slurm":
            executor.update_parameters(slurm_dependency=f"afterany:{array_id}")
        else:  # the local executors know no dependencies: the teachers finish first
            _wait(teacher_jobs)
        print(f"submitted {len(teachers)} teachers as job array {array_id}")
    run_jobs = executor.map_array(task, runs)
    jobs += run_jobs
    array_id = str(run_jobs[0].job_id).split("_")[0]
    print(
        f"submitted {len(plan.todo)} runs in {len(runs)} tasks as job array {array_id}; "
        f"logs in {folder}/; "
        f"follow with: xdkd status {store.root}"
    )
    if options.detach:
        return summary
    if options.cluster == "debug":  # debug jobs run in this process when asked for results
        _wait(run_jobs)
    return _follow(store, plan, run_jobs, summary, progress)


def _wait(jobs: list) -> None:
    for job in jobs:
        try:
            job.result()
        except Exception as error:  # the task recorded its failure in the store
            tqdm.write(f"job {job.job_id} ended with {type(error).__name__}: {error}")


def _follow(
    store: RunStore, plan: SweepPlan, jobs: list, summary: SweepSummary, progress: bool
) -> SweepSummary:
    """Watch the run directories (not the jobs' pickles) until every run of the plan has a
    record or an error, or every job has ended."""
    bar = tqdm(total=len(plan.todo), desc="sweep", unit="run", disable=not progress)
    waiting = {spec.key: spec for spec in plan.todo}
    while True:
        for key, spec in list(waiting.items()):
            record = store.record(key)
            if record is not None and record.evaluation_key == plan.evaluation.key:
                summary.done.append(key)
            elif store.has_error(spec) and not store.is_running(key):
                summary.failed.append((key, spec.label, store.error(key)["error"]))
            else:
                continue
            del waiting[key]
            bar.update(1)
        bar.set_postfix(done=len(summary.done), failed=len(summary.failed), left=len(waiting))
        if not waiting or all(job.done() for job in jobs):
            break
        time.sleep(POLL_S)
    bar.close()
    for key in waiting:
        summary.failed.append((key, waiting[key].label, "its job ended without a record"))
    return summary
