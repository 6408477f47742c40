"""Which runs of a sweep train together as a cohort, and how many at once.

The runs of a method comparison differ only in the method: same setting, teachers, seed,
recipe and (common random numbers) the same batches. A cohort trains them in one worker and
runs each teacher once per batch for all of them (`benchmark.run.train.fit_cohort`). Runs join a
cohort when they share everything but the method and the teacher access (`cohort_key`);
a run that trains no student (the `teacher` row) or is trained already (only evaluated)
stays alone. A cohort's size is bounded by the memory its members keep between their steps
(weights, gradients, optimizer moments and the kept epochs of each student), measured from
the student's parameter count against the memory free on the device, or set with
`--cohort-size` (1: every run alone). When there are fewer cohorts than workers, the largest
are split, so no worker idles while another steps a long cohort.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

from benchmark.methods import METHODS
from benchmark.suite.specs import RunSpec

MAX_COHORT = 16  # members of one cohort at most (auto)
MEMORY_SHARE = 0.25  # of the free memory a cohort's members may keep together (auto)
# per student parameter a member keeps: weights, gradients, two AdamW moments and up to the
# four kept epochs of the selection rules, in fp32
KEPT_BYTES_PER_PARAM = 8 * 4


def cohort_key(spec: RunSpec) -> str:
    """What the runs of one cohort share: everything but the method (and its teacher
    access, which restricts what a method may read, not what a teacher computes)."""
    setting = spec.setting.model_dump(mode="json")
    setting["protocol"]["params"].pop("teacher_access", None)
    shared = {
        "setting": setting,
        "teachers": [t.key for t in spec.teacher_specs],
        "student": spec.student.model_dump(mode="json"),
        "recipe": spec.student_recipe.model_dump(mode="json"),
        "seed": spec.seed,
        "sizes": [spec.image_size, spec.source_validation, spec.target_validation],
    }
    return json.dumps(shared, sort_keys=True)


def joins_cohort(spec: RunSpec, trained: Callable[[RunSpec], bool]) -> bool:
    """A run that trains a student not trained yet."""
    return METHODS.get(spec.method.name).trains_student and not trained(spec)


def free_memory(device: torch.device) -> int:
    """Bytes free on the device: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 4 * 2**30  # no /proc (not Linux): assume a small machine


def auto_cohort_size(specs: list[RunSpec], device: torch.device) -> tuple[int, str]:
    """(members per cohort, how it was chosen): as many as MEMORY_SHARE of the free memory
    holds of what the largest student keeps, at most MAX_COHORT."""
    from benchmark.models import create_backbone

    if not specs:
        return 1, "no runs"
    params = max(
        sum(p.numel() for p in create_backbone(s.student, 10).parameters())
        for s in {s.student.name: s for s in specs}.values()
    )
    keeps = params * KEPT_BYTES_PER_PARAM
    fit = int(MEMORY_SHARE * free_memory(device)) // max(1, keeps)
    size = max(1, min(MAX_COHORT, fit))
    return size, (
        f"{size} runs (each keeps {keeps / 2**20:.0f} MB between its steps; "
        f"{MEMORY_SHARE:.0%} of the device's free memory holds {fit})"
    )


def plan_cohorts(specs: list[RunSpec], size: int, workers: int) -> list[list[RunSpec]]:
    """The specs (all joining cohorts) in cohorts of at most `size`, grouped by
    `cohort_key` in the sweep's order; the largest split in halves while there are fewer
    cohorts than `workers`. A cohort of one is a solo run."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(cohort_key(spec), []).append(spec)
    cohorts = [
        group[start : start + size]
        for group in groups.values()
        for start in range(0, len(group), max(1, size))
    ]
    while len(cohorts) < workers:
        largest = max(cohorts, key=len, default=[])
        if len(largest) < 2:
            break
        index = cohorts.index(largest)
        half = (len(largest) + 1) // 2
        cohorts[index : index + 1] = [largest[:half], largest[half:]]
    return cohorts
