"""`--jobs-per-gpu auto`: how many runs of a sweep fit on one GPU at once.

Small digit runs use a few hundred MB of a large GPU and leave most of its compute idle, so a
sweep fills the GPU with several worker processes. The memory one run needs is measured, not
guessed: for each distinct (teacher, image size, batch) of the sweep, one KD step on the GPU
that trains a network of the teacher's size while a teacher runs beside it (a bound on both
the teacher's own training and any smaller student's), the largest peak allocation plus a
CUDA context per process. The count is capped by the
CPU cores (each worker needs one to feed its GPU work) and by `MAX_JOBS_PER_GPU`.
"""

from __future__ import annotations

import torch

from benchmark.machine import usable_cpus
from benchmark.suite.specs import RunSpec

CUDA_CONTEXT_BYTES = 600 * 2**20  # a process's CUDA context and cuDNN/cuBLAS workspaces
MEMORY_SHARE = 0.85  # of the GPU's memory the workers may fill together
MAX_JOBS_PER_GPU = 16


def jobs_for_memory(gpu_bytes: int, run_bytes: int, cpus: int, gpus: int) -> int:
    """Workers per GPU: as many runs of `run_bytes` as fit in MEMORY_SHARE of `gpu_bytes`,
    at most one per CPU core across the `gpus`, at least one."""
    fit = int(MEMORY_SHARE * gpu_bytes) // max(1, run_bytes + CUDA_CONTEXT_BYTES)
    per_gpu_cpus = max(1, cpus // max(1, gpus))
    return max(1, min(fit, per_gpu_cpus, MAX_JOBS_PER_GPU))


def measured_run_bytes(spec: RunSpec, device: torch.device) -> int:
    """Peak CUDA memory of one KD step at `spec`'s image size and batch in which both the
    trained network and the teacher have the teacher's architecture (see the docstring)."""
    from benchmark.run.bench import Job, initial_models, job_domains, suite_step
    from benchmark.run.fastpath import FastPath

    batch = max(spec.student_recipe.batch_size, spec.teacher_recipe.batch_size)
    job = Job(
        "sizing", spec.teacher.name, spec.teacher.name, spec.image_size, batch, 10, images=2 * batch
    )
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fast = FastPath.for_device(device)
    step = suite_step(job, job_domains(job), initial_models(job), device, fast)
    step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del step
    torch.cuda.empty_cache()
    return peak


def auto_jobs_per_gpu(specs: list[RunSpec], device: torch.device) -> tuple[int, str]:
    """(workers per GPU, how it was chosen) for a sweep on `device`."""
    if device.type != "cuda" or not specs:
        return 1, "one worker (no GPU)"
    distinct = {
        (s.teacher.name, s.image_size, s.student_recipe.batch_size, s.teacher_recipe.batch_size): s
        for s in specs
    }
    measured = {key: measured_run_bytes(spec, device) for key, spec in distinct.items()}
    key = max(measured, key=measured.get)
    spec, run_bytes = distinct[key], measured[key]
    gpu_bytes = torch.cuda.get_device_properties(device).total_memory
    gpus = torch.cuda.device_count() if device.index is None else 1
    jobs = jobs_for_memory(gpu_bytes, run_bytes, usable_cpus(), gpus)
    return jobs, (
        f"{jobs} per GPU: a {spec.teacher.name} training step at {spec.image_size} px "
        f"peaks at {run_bytes / 2**20:.0f} MB of "
        f"{gpu_bytes / 2**30:.0f} GB"
    )
