"""The results store: one directory per run, named by its spec's hash.

`record.json` is written atomically (temp file, then rename), so a killed process never
leaves a half-written record; a failed run leaves `error.json` instead. `spec.json` is
written when a sweep queues the run, so any process (a Slurm task, `xdkd status`) can read
what the run is from the directory alone. A process running a spec holds `claim.lock`
(a kernel lock, gone when the process dies) and describes itself in `running.json`.
Teachers live beside the runs, one directory per teacher key, with the same lock, error and
spec files.
"""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

import torch

from benchmark.config import RunRecord, RunSpec, TeacherSpec
from benchmark.files import atomic_write
from benchmark.locks import is_locked


def write_json(path: Path, payload: Any) -> None:
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        return self.root / "runs" / key

    def has_record(self, spec: RunSpec) -> bool:
        return (self.run_dir(spec.key) / "record.json").is_file()

    def has_error(self, spec: RunSpec) -> bool:
        return (self.run_dir(spec.key) / "error.json").is_file()

    def claim_path(self, key: str) -> Path:
        return self.run_dir(key) / "claim.lock"

    def is_running(self, key: str) -> bool:
        return is_locked(self.claim_path(key))

    def running_info(self, key: str) -> dict[str, Any] | None:
        """Host, pid and start time of the process running it (valid while it is claimed)."""
        try:
            return json.loads((self.run_dir(key) / "running.json").read_text())
        except (OSError, ValueError):
            return None

    def queue(self, spec: RunSpec) -> None:
        """Write spec.json once: the run is known to the store from now on."""
        path = self.run_dir(spec.key) / "spec.json"
        if not path.is_file():
            write_json(path, spec.model_dump(mode="json"))

    def load_spec(self, key: str) -> RunSpec:
        return RunSpec.model_validate_json((self.run_dir(key) / "spec.json").read_text())

    def keys(self) -> list[str]:
        return sorted(path.parent.name for path in self.root.glob("runs/*/spec.json"))

    def write_record(self, record: RunRecord) -> None:
        directory = self.run_dir(record.key)
        write_json(directory / "record.json", record.model_dump(mode="json"))
        (directory / "error.json").unlink(missing_ok=True)

    def write_error(self, spec: RunSpec, error: BaseException) -> None:
        payload = {
            "key": spec.key,
            "spec": spec.model_dump(mode="json"),
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exception(error),
        }
        write_json(self.run_dir(spec.key) / "error.json", payload)

    def records(self) -> list[RunRecord]:
        paths = sorted(self.root.glob("runs/*/record.json"))
        return [RunRecord.model_validate_json(path.read_text()) for path in paths]

    def errors(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.root.glob("runs/*/error.json"))]

    def error(self, key: str) -> dict[str, Any] | None:
        path = self.run_dir(key) / "error.json"
        return json.loads(path.read_text()) if path.is_file() else None

    # --- teachers ---------------------------------------------------------------------

    def teacher_dir(self, spec: TeacherSpec) -> Path:
        return self.root / "teachers" / spec.key

    def teacher_lock(self, spec: TeacherSpec) -> Path:
        return self.teacher_dir(spec) / "train.lock"

    def has_teacher(self, spec: TeacherSpec) -> bool:
        return (self.teacher_dir(spec) / "teacher.json").is_file()

    def teacher_error(self, spec: TeacherSpec) -> str | None:
        path = self.teacher_dir(spec) / "error.json"
        return json.loads(path.read_text())["error"] if path.is_file() else None

    def write_teacher_error(self, spec: TeacherSpec, error: BaseException) -> None:
        payload = {
            "key": spec.key,
            "spec": spec.model_dump(mode="json"),
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exception(error),
        }
        write_json(self.teacher_dir(spec) / "error.json", payload)

    def clear_teacher_error(self, spec: TeacherSpec) -> None:
        (self.teacher_dir(spec) / "error.json").unlink(missing_ok=True)

    def load_teacher(self, spec: TeacherSpec) -> tuple[dict[str, torch.Tensor], dict] | None:
        directory = self.teacher_dir(spec)
        if not (directory / "teacher.json").is_file():
            return None
        state = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        return state, json.loads((directory / "teacher.json").read_text())

    def save_teacher(
        self, spec: TeacherSpec, state: dict[str, torch.Tensor], info: dict[str, Any]
    ) -> None:
        """Weights first, then the JSON that marks the teacher complete."""
        directory = self.teacher_dir(spec)
        directory.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".weights.", dir=directory)
        os.close(handle)
        try:
            torch.save(state, tmp)
            os.replace(tmp, directory / "weights.pt")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        write_json(directory / "teacher.json", {"spec": spec.model_dump(mode="json"), **info})
        self.clear_teacher_error(spec)
