"""The unit of work every executor hands out, and how any process carries one out.

A task names a teacher to train or a run to execute by its key; the spec (and, for a run,
the evaluation it is to get) travels as JSON, so a task crosses process and machine
boundaries unchanged. Whoever executes a run first takes its claim (a kernel lock on
`claim.lock`); a second process finds it taken and reports `busy`, so no two processes ever
run the same spec, and a dead holder's claim is released by the kernel for the next one to
take. A run whose student is trained already is only evaluated. A cohort task carries
several runs (`benchmark.executors.cohorts`): it claims those it can, trains their students
together, then evaluates each as its own run; its result holds one result per member.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmark.failures import describe_failure
from benchmark.locks import LockHeld, file_lock
from benchmark.run.harness import Harness
from benchmark.store import write_json
from benchmark.suite.config import EvalSpec
from benchmark.suite.specs import RunSpec, TeacherSpec

Outcome = Literal["done", "failed", "busy", "recorded"]


@dataclass(frozen=True)
class Task:
    kind: Literal["teacher", "run", "cohort"]
    key: str
    teacher_keys: tuple[str, ...]
    label: str
    spec_json: str
    evaluation_json: str = ""
    members: tuple[Task, ...] = ()  # a cohort's runs

    @property
    def runs(self) -> tuple[Task, ...]:
        """The runs this task executes: a cohort's members, or the run itself."""
        return self.members if self.kind == "cohort" else (self,) if self.kind == "run" else ()

    @classmethod
    def for_teacher(cls, spec: TeacherSpec) -> Task:
        return cls("teacher", spec.key, (spec.key,), spec.label, spec.model_dump_json())

    @classmethod
    def for_run(cls, spec: RunSpec, evaluation: EvalSpec) -> Task:
        teachers = tuple(t.key for t in spec.teacher_specs)
        return cls(
            "run",
            spec.key,
            teachers,
            spec.label,
            spec.model_dump_json(),
            evaluation.model_dump_json(),
        )

    @classmethod
    def for_cohort(cls, specs: list[RunSpec], evaluation: EvalSpec) -> Task:
        """One task for runs that train together; a single spec is an ordinary run."""
        if len(specs) == 1:
            return cls.for_run(specs[0], evaluation)
        members = tuple(cls.for_run(spec, evaluation) for spec in specs)
        first = members[0]
        label = f"cohort of {len(members)}: {first.label} and {len(members) - 1} more"
        key = "cohort-" + "-".join(m.key for m in members)
        return cls("cohort", key, first.teacher_keys, label, "", first.evaluation_json, members)


@dataclass(frozen=True)
class Result:
    key: str
    outcome: Outcome
    reason: str = ""
    members: tuple[Result, ...] = ()  # a cohort's, one per member task


def execute(harness: Harness, task: Task, retry_failed: bool = False) -> Result:
    if task.kind == "teacher":
        spec = TeacherSpec.model_validate_json(task.spec_json)
        return _train_teacher(harness, spec, retry_failed)
    evaluation = EvalSpec.model_validate_json(task.evaluation_json)
    if task.kind == "cohort":
        return _execute_cohort(harness, task, evaluation)
    return _execute_run(harness, RunSpec.model_validate_json(task.spec_json), evaluation)


def _train_teacher(harness: Harness, spec: TeacherSpec, retry_failed: bool) -> Result:
    """Train (or load) the teacher; a failure is kept in the teacher's error.json and
    reported by every run that needs it."""
    try:
        harness.teacher(spec, retry_failed)
    except Exception as error:
        return Result(spec.key, "failed", describe_failure(error))
    return Result(spec.key, "done")


def _execute_run(harness: Harness, spec: RunSpec, evaluation: EvalSpec) -> Result:
    store = harness.store
    try:
        with file_lock(store.claim_path(spec.key), blocking=False):
            record = store.record(spec.key)
            if record is not None and record.evaluation_key == evaluation.key:
                return Result(spec.key, "recorded")
            with _running(store.running_path(spec.key)):
                return _run_claimed(harness, spec, evaluation)
    except LockHeld:
        return Result(spec.key, "busy")


def _execute_cohort(harness: Harness, task: Task, evaluation: EvalSpec) -> Result:
    """Claim each member (one held elsewhere is `busy`, one recorded meanwhile `recorded`),
    train the claimed ones' students together, then evaluate each."""
    store = harness.store
    results: dict[str, Result] = {}
    claimed: list[RunSpec] = []
    with ExitStack() as held:
        for member in task.members:
            spec = RunSpec.model_validate_json(member.spec_json)
            try:
                held.enter_context(file_lock(store.claim_path(spec.key), blocking=False))
            except LockHeld:
                results[spec.key] = Result(spec.key, "busy")
                continue
            record = store.record(spec.key)
            if record is not None and record.evaluation_key == evaluation.key:
                results[spec.key] = Result(spec.key, "recorded")
                continue
            held.enter_context(_running(store.running_path(spec.key)))
            claimed.append(spec)
        errors = harness.train_cohort(claimed)
        for spec in claimed:
            error = errors.get(spec.key)
            if error is not None:
                results[spec.key] = _failed(harness, spec, error)
            else:
                results[spec.key] = _run_claimed(harness, spec, evaluation, len(claimed))
    members = tuple(results[m.key] for m in task.members)
    return Result(task.key, "done", members=members)


@contextmanager
def _running(path: Path) -> Iterator[None]:
    """The `running.json` of a claimed run while this process works on it."""
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    write_json(path, holder)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _failed(harness: Harness, spec: RunSpec, error: Exception) -> Result:
    """The run's failure, kept in its error.json."""
    reason = describe_failure(error)
    try:
        harness.store.write_error(spec, error)
    except OSError as unwritten:
        reason += f" (its error.json could not be written either: {describe_failure(unwritten)})"
    return Result(spec.key, "failed", reason)


def _run_claimed(harness: Harness, spec: RunSpec, evaluation: EvalSpec, cohort: int = 0) -> Result:
    """Train (unless trained: in its cohort of `cohort`, or before) and evaluate the run."""
    try:
        record, trained = harness.run_one(spec, evaluation)
        harness.store.write_record(record)
    except Exception as error:
        return _failed(harness, spec, error)
    accuracy = 100 * record.metrics["target_acc"]
    seconds = record.training["evaluation_wall_time_s"]
    if trained:
        took = f"{record.wall_time_s:.0f} s"
    elif cohort:
        train_s = record.training["train_wall_time_s"]
        took = f"{train_s:.0f} s of training in a cohort of {cohort}, evaluated in {seconds:.0f} s"
    else:
        took = f"evaluated in {seconds:.0f} s"
    return Result(spec.key, "done", f"target {accuracy:.1f}% ({took})")
