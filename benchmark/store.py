"""The results store: one directory per run, named by its spec's hash.

`record.json` is written atomically (temp file, then rename), so a killed process never
leaves a half-written record; a failed run leaves `error.json` instead and is retried on the
next invocation. Teachers live beside the runs, one directory per teacher key.
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


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, payload: Any) -> None:
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        return self.root / "runs" / key

    def has_record(self, spec: RunSpec) -> bool:
        return (self.run_dir(spec.key) / "record.json").is_file()

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

    # --- teachers ---------------------------------------------------------------------

    def teacher_dir(self, spec: TeacherSpec) -> Path:
        return self.root / "teachers" / spec.key

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
        torch.save(state, tmp)
        os.replace(tmp, directory / "weights.pt")
        write_json(directory / "teacher.json", {"spec": spec.model_dump(mode="json"), **info})
