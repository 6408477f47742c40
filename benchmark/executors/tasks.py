"""The unit of work every executor hands out, and how any process carries one out.

A task names a teacher to train or a run to execute by its key; the spec travels as JSON,
so a task crosses process and machine boundaries unchanged. Whoever executes a run first
takes its claim (a kernel lock on `claim.lock`); a second process finds it taken and
reports `busy`, so no two processes ever run the same spec, and a dead holder's claim is
released by the kernel for the next one to take.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Literal

from benchmark.config import RunSpec, TeacherSpec
from benchmark.harness import Harness, run_label
from benchmark.locks import LockHeld, file_lock
from benchmark.store import write_json

Outcome = Literal["done", "failed", "busy", "recorded"]


@dataclass(frozen=True)
class Task:
    kind: Literal["teacher", "run"]
    key: str
    teacher_key: str
    label: str
    spec_json: str

    @classmethod
    def for_teacher(cls, spec: TeacherSpec) -> Task:
        label = f"teacher {spec.backbone.name} on {spec.source} seed {spec.seed}"
        return cls("teacher", spec.key, spec.key, label, spec.model_dump_json())

    @classmethod
    def for_run(cls, spec: RunSpec) -> Task:
        return cls("run", spec.key, spec.teacher_spec.key, run_label(spec), spec.model_dump_json())


@dataclass(frozen=True)
class Result:
    key: str
    outcome: Outcome
    reason: str = ""


def execute(harness: Harness, task: Task, retry_failed: bool = False) -> Result:
    if task.kind == "teacher":
        spec = TeacherSpec.model_validate_json(task.spec_json)
        return _train_teacher(harness, spec, retry_failed)
    return _execute_run(harness, RunSpec.model_validate_json(task.spec_json))


def _train_teacher(harness: Harness, spec: TeacherSpec, retry_failed: bool) -> Result:
    """Train (or load) the teacher; a failure is kept in the teacher's error.json and
    reported by every run that needs it."""
    try:
        harness.teacher(spec, retry_failed)
    except Exception as error:
        return Result(spec.key, "failed", f"{type(error).__name__}: {error}")
    return Result(spec.key, "done")


def _execute_run(harness: Harness, spec: RunSpec) -> Result:
    store = harness.store
    try:
        with file_lock(store.claim_path(spec.key), blocking=False):
            if store.has_record(spec):
                return Result(spec.key, "recorded")
            running = store.run_dir(spec.key) / "running.json"
            holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
            write_json(running, holder)
            try:
                return _run_claimed(harness, spec)
            finally:
                running.unlink(missing_ok=True)
    except LockHeld:
        return Result(spec.key, "busy")


def _run_claimed(harness: Harness, spec: RunSpec) -> Result:
    try:
        record = harness.run_one(spec)
    except Exception as error:
        harness.store.write_error(spec, error)
        return Result(spec.key, "failed", f"{type(error).__name__}: {error}")
    harness.store.write_record(record)
    accuracy = 100 * record.metrics["target_acc"]
    return Result(spec.key, "done", f"target {accuracy:.1f}% ({record.wall_time_s:.0f} s)")
