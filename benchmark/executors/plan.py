"""What a sweep has left to do, in what order, and how far it has got.

Every executor shares this: the plan (which specs are recorded, failed before, or to do;
which teachers must be trained first), the scheduler that hands out tasks (teachers first,
then runs, preferring a worker's current teacher) and the one progress bar of the sweep.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from benchmark.executors.cohorts import joins_cohort, plan_cohorts
from benchmark.executors.tasks import Result, Task
from benchmark.store import RunStore
from benchmark.suite.config import EvalSpec
from benchmark.suite.specs import RunSpec, TeacherSpec

BUSY_RETRY_S = 2.0  # how long a run claimed by another process waits before it is asked again


@dataclass
class SweepPlan:
    specs: list[RunSpec]
    evaluation: EvalSpec
    todo: list[RunSpec]
    recorded: int
    not_retried: list[RunSpec]
    teachers: list[TeacherSpec]
    reevaluate: int = 0  # of `todo`: trained already, only evaluated

    def tasks(
        self, store: RunStore, cohort_size: int, workers: int
    ) -> tuple[list[Task], list[Task]]:
        """The teachers to train, then the runs: those that train a student in cohorts of
        up to `cohort_size` (`benchmark.executors.cohorts`), the rest alone."""
        teachers = [Task.for_teacher(t) for t in self.teachers]
        joining: list[RunSpec] = []
        alone: list[RunSpec] = []
        for spec in self.todo:
            (joining if joins_cohort(spec, store.is_trained) else alone).append(spec)
        cohorts = plan_cohorts(joining, cohort_size, workers)
        runs = [Task.for_cohort(cohort, self.evaluation) for cohort in cohorts]
        return teachers, runs + [Task.for_run(s, self.evaluation) for s in alone]


def plan_sweep(
    store: RunStore, specs: list[RunSpec], evaluation: EvalSpec, retry_failed: bool
) -> SweepPlan:
    """Queue every spec in the store (spec.json), then sort out what is left: runs without a
    record of this evaluation (a trained run with another evaluation is only evaluated
    again), less the failed ones unless `retry_failed`; teachers they need that are not
    trained yet (a teacher that failed before only with `retry_failed`)."""
    todo, not_retried, recorded, reevaluate = [], [], 0, 0
    for spec in specs:
        store.queue(spec)
        record = store.record(spec.key)
        if record is not None and record.evaluation_key == evaluation.key:
            recorded += 1
        elif record is None and store.has_error(spec) and not retry_failed:
            not_retried.append(spec)
        else:
            todo.append(spec)
            reevaluate += record is not None
    teachers: dict[str, TeacherSpec] = {}
    for spec in todo:
        for teacher in spec.teacher_specs:
            if store.has_teacher(teacher) or (store.teacher_error(teacher) and not retry_failed):
                continue
            teachers.setdefault(teacher.key, teacher)
    return SweepPlan(
        specs, evaluation, todo, recorded, not_retried, list(teachers.values()), reevaluate
    )


@dataclass
class SweepSummary:
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # key, label, reason
    recorded: int = 0
    not_retried: int = 0


class Scheduler:
    """Hands out tasks: every teacher first (they may run in parallel), then the runs whose
    teachers are all done (so a worker is not idle while the last teachers train), a
    worker's current teacher's runs first. A run another process holds comes back after
    BUSY_RETRY_S, until that process records it or dies."""

    def __init__(self, teachers: list[Task], runs: list[Task]) -> None:
        self.teachers = deque(teachers)
        self.runs = list(runs)
        self.deferred: list[tuple[float, Task]] = []
        self.in_flight: dict[str, Task] = {}

    @property
    def finished(self) -> bool:
        return not (self.teachers or self.runs or self.deferred or self.in_flight)

    @property
    def queued(self) -> int:
        return sum(len(t.runs) for t in self.runs) + len(self.deferred)

    def next(self, affinity: tuple[str, ...] | None = None) -> Task | None:
        """The next task for a worker that last used teacher `affinity`; None: nothing yet."""
        task = self._pick(affinity)
        if task is not None:
            self.in_flight[task.key] = task
        return task

    def _pick(self, affinity: str | None) -> Task | None:
        if self.teachers:
            return self.teachers.popleft()
        training = {t.key for t in self.in_flight.values() if t.kind == "teacher"}
        ready = [i for i, task in enumerate(self.runs) if not training & set(task.teacher_keys)]
        if ready:
            index = next((i for i in ready if self.runs[i].teacher_keys == affinity), ready[0])
            return self.runs.pop(index)
        now = time.monotonic()
        for index, (when, task) in enumerate(self.deferred):
            if when <= now and not training & set(task.teacher_keys):
                return self.deferred.pop(index)[1]
        return None

    def report(self, task: Task, result: Result) -> None:
        """A finished task; a run (or a cohort's member) another process held comes back
        alone after BUSY_RETRY_S."""
        del self.in_flight[task.key]
        for run, outcome in _member_results(task, result):
            if outcome.outcome == "busy":
                self.deferred.append((time.monotonic() + BUSY_RETRY_S, run))

    def requeue(self, task: Task, split: bool = False) -> None:
        """A task whose worker died: it goes back to the front of its queue; `split`: a
        cohort comes back as its runs, each alone."""
        del self.in_flight[task.key]
        if task.kind == "teacher":
            self.teachers.appendleft(task)
        elif split and task.kind == "cohort":
            self.runs[0:0] = list(task.members)
        else:
            self.runs.insert(0, task)


def _member_results(task: Task, result: Result) -> list[tuple[Task, Result]]:
    """(run, its result) for each run the task executed: a cohort's members, or the run."""
    outcomes = result.members if task.kind == "cohort" else (result,) * len(task.runs)
    return list(zip(task.runs, outcomes, strict=True))


class SweepProgress:
    """One bar over the sweep's runs: done, failed, running and queued, with time left."""

    def __init__(self, plan: SweepPlan, enabled: bool) -> None:
        self.summary = SweepSummary(recorded=plan.recorded, not_retried=len(plan.not_retried))
        self.teachers_left = len(plan.teachers)
        self.shown: dict[str, int] = {}
        self.bar = tqdm(total=len(plan.todo), desc="sweep", unit="run", disable=not enabled)
        if plan.recorded:
            tqdm.write(f"{plan.recorded} of {len(plan.specs)} runs already recorded, skipped")
        if plan.reevaluate:
            tqdm.write(
                f"{plan.reevaluate} trained runs have another evaluation: evaluated again, "
                "not trained"
            )
        if plan.not_retried:
            tqdm.write(
                f"{len(plan.not_retried)} runs failed before and are not retried "
                "(see xdkd status; rerun with --retry-failed to retry them)"
            )

    def update(self, scheduler: Scheduler) -> None:
        running = sum(len(task.runs) for task in scheduler.in_flight.values())
        fields = {
            "done": len(self.summary.done),
            "failed": len(self.summary.failed),
            "running": running,
            "queued": scheduler.queued,
        }
        if self.teachers_left:
            fields["teachers left"] = self.teachers_left
        if fields != self.shown:  # redraw on change only: logs stay short
            self.shown = fields
            self.bar.set_postfix(fields, refresh=True)

    def finished(self, task: Task, result: Result) -> None:
        if task.kind == "teacher":
            self.teachers_left -= 1
            if result.outcome == "failed":
                tqdm.write(f"FAILED {task.label}: {result.reason}")
            return
        for run, outcome in _member_results(task, result):
            self._finished_run(run, outcome)

    def _finished_run(self, task: Task, result: Result) -> None:
        if result.outcome == "busy":
            return
        if result.outcome == "failed":
            self.summary.failed.append((task.key, task.label, result.reason))
            tqdm.write(f"FAILED {task.label}: {result.reason}")
        elif result.outcome == "recorded":  # another process finished it meanwhile
            self.summary.recorded += 1
        else:
            self.summary.done.append(task.key)
            tqdm.write(f"done {task.label}: {result.reason}")
        self.bar.update(1)

    def close(self, scheduler: Scheduler) -> SweepSummary:
        self.update(scheduler)
        self.bar.close()
        return self.summary
