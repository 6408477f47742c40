"""A sweep of run specs through the executor the options name (`run_sweep`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from benchmark.executors.cohorts import auto_cohort_size
from benchmark.executors.local import run_in_process, run_pool, worker_setups
from benchmark.executors.plan import SweepSummary, plan_sweep
from benchmark.executors.slurm import SlurmOptions, run_slurm
from benchmark.store import RunStore
from benchmark.suite.config import EvalSpec
from benchmark.suite.specs import RunSpec

__all__ = ["ExecutorOptions", "SlurmOptions", "SweepSummary", "run_sweep"]


@dataclass(frozen=True)
class ExecutorOptions:
    executor: Literal["local", "slurm"] = "local"
    workers: int | None = None  # None: one per visible GPU x jobs_per_gpu, or one on CPU
    jobs_per_gpu: int = 1
    retry_failed: bool = False
    progress: bool = True
    cohort_size: int | None = None  # None: as many as memory allows (cohorts.auto_cohort_size)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)


def run_sweep(
    store: RunStore,
    specs: list[RunSpec],
    evaluation: EvalSpec,
    device: torch.device,
    options: ExecutorOptions,
) -> SweepSummary:
    """Run every spec that has no record of this evaluation yet (and, with retry_failed,
    those that failed); a trained run with another evaluation is evaluated again."""
    plan = plan_sweep(store, specs, evaluation, options.retry_failed)
    size = options.cohort_size or auto_cohort_size(plan.todo, device)[0]
    if options.executor == "slurm":
        return run_slurm(store, plan, options.slurm, options.retry_failed, options.progress, size)
    setups = worker_setups(device, options.workers, options.jobs_per_gpu)
    if not setups:
        return run_in_process(store, plan, device, options.retry_failed, options.progress, size)
    return run_pool(store, plan, setups, options.retry_failed, options.progress, size)
