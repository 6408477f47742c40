"""The unit of work every executor hands out, and how any process carries one out.

A task names a teacher to train or a run to execute by its key; the spec (and, for a run,
the evaluation it is to get) travels as JSON, so a task crosses process and machine
boundaries unchanged. Whoever executes a run first takes its claim (a kernel lock on
`claim.lock`); a second process finds it taken and reports `busy`, so no two processes ever
run the same spec, and a dead holder's claim is released by the kernel for the next one to
take. A run whose student is trained already is only evaluated.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Literal

from benchmark.config import EvalSpec
from benchmark.failures import describe_failure
from benchmark.harness import Harness
from benchmark.locks import LockHeld, file_lock
from benchmark.specs import RunSpec, TeacherSpec
from benchmark.store import write_json

Outcome = Literal["done", "failed", "busy", "recorded"]


@dataclass(frozen=True)
class Task:
    kind: Literal["teacher", "run"]
    key: str
    teacher_keys: tuple[str, ...]
    label: str
    spec_json: str
    evaluation_json: str = ""

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


@dataclass(frozen=True)
class Result:
    key: str
    outcome: Outcome
    reason: str = ""


def execute(harness: Harness, task: Task, retry_failed: bool = False) -> Result:
    if task.kind == "teacher":
        spec = TeacherSpec.model_validate_json(task.spec_json)
        return _train_teacher(harness, spec, retry_failed)
    evaluation = EvalSpec.model_validate_json(task.evaluation_json)
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
            running = store.running_path(spec.key)
            holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
            write_json(running, holder)
            try:
                return _run_claimed(harness, spec, evaluation)
            finally:
                running.unlink(missing_ok=True)
    except LockHeld:
        return Result(spec.key, "busy")


def _run_claimed(harness: Harness, spec: RunSpec, evaluation: EvalSpec) -> Result:
    try:
        record, trained = harness.run_one(spec, evaluation)
        harness.store.write_record(record)
    except Exception as error:
        reason = describe_failure(error)
        try:
            harness.store.write_error(spec, error)
        except OSError as unwritten:
            reason += (
                f" (its error.json could not be written either: {describe_failure(unwritten)})"
            )
        return Result(spec.key, "failed", reason)
    accuracy = 100 * record.metrics["target_acc"]
    seconds = record.training["evaluation_wall_time_s"]
    took = f"{record.wall_time_s:.0f} s" if trained else f"evaluated in {seconds:.0f} s"
    return Result(spec.key, "done", f"target {accuracy:.1f}% ({took})")
