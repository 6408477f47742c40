"""The results store: one directory per run, named by its training key. The only module that
knows the store's file names.

runs/<key>/
  spec.json        the training spec, written when a sweep queues the run
  checkpoint.pt    the last finished epoch while it trains (removed once it is recorded)
  training.json    how training went (curves, selections, what it saw) and the sha256 of
  student-e<N>.pt  the saved weights: the last epoch and each epoch a selection rule chose
  method.pt        a test-time-adapting method's trained parts (Meta-DMoE's aggregator)
  record.json      training plus evaluation: every metric (written atomically)
  error.json       why it failed, instead of a record
  claim.lock       held (flock) by the process running it; running.json says who
teachers/<key>/    teacher.json (with the sha256 of) weights.pt, checkpoint.pt, train.lock,
                   error.json

Every artefact is verified when read: a file that does not parse, does not validate or does
not match its recorded sha256 is moved aside as `<name>.corrupt-<time>` with a note, and
what it stood for is rebuilt (a teacher retrained, a run trained or evaluated again). A
record written by an older version is not damage: it is refused with a line saying what to do.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmark.errors import XdkdError
from benchmark.failures import describe_failure
from benchmark.files import atomic_write, note, set_aside, sha256_file
from benchmark.locks import is_locked
from benchmark.suite.specs import RECORD_FORMAT, RunRecord, RunSpec, TeacherSpec

RECORD, ERROR, SPEC, TRAINING, CHECKPOINT = (
    "record.json",
    "error.json",
    "spec.json",
    "training.json",
    "checkpoint.pt",
)
TEACHER_INFO, TEACHER_WEIGHTS = "teacher.json", "weights.pt"
METHOD_WEIGHTS, METHOD_ENTRY = "method.pt", "method"  # the file, and its key in "weights"


def write_json(path: Path, payload: Any) -> None:
    atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path, check: Callable[[Any], Any] | None = None) -> Any | None:
    """The file's JSON (passed through `check`), None when it is absent; a damaged one is set
    aside and counts as absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        parsed = json.loads(data.decode("utf-8"))
        return check(parsed) if check else parsed
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        set_aside(path, f"not valid JSON: {error}")
    except (ValidationError, KeyError, TypeError, ValueError) as error:
        set_aside(path, f"not what it should hold: {str(error).splitlines()[0]}")
    return None


class OldRecord(XdkdError):
    """A record written by an older version of xdkd."""


def parse_record(data: Any, path: Path) -> RunRecord:
    """A record, or OldRecord when it has another format (ValidationError when damaged)."""
    if isinstance(data, dict) and data.get("format") != RECORD_FORMAT and "spec" in data:
        code = (data.get("provenance") or {}).get("code", "an older commit")
        raise OldRecord(
            f"{path} was written by an older xdkd (record format "
            f"{data.get('format', 'xdkd-record/1')}, code {code}), which saved no student "
            "weights; rerun its suite into a new directory (xdkd run SUITE --out DIR), or "
            f"report it with that code (git checkout {code.removesuffix('-dirty')})"
        )
    return RunRecord.model_validate(data)


def load_torch(path: Path, digest: str | None = None) -> Any | None:
    """A torch file (tensors and plain types only), verified against its sha256 when one is
    recorded; a damaged one is set aside and counts as absent."""
    import torch

    if not path.is_file():
        return None
    if digest is not None and sha256_file(path) != digest:
        set_aside(path, "its sha256 differs from the one recorded when it was written")
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a truncated or garbled file
        set_aside(path, f"unreadable: {str(error).splitlines()[0][:120]}")
        return None


def save_torch(path: Path, payload: Any) -> str:
    """Write atomically (temp file, then rename); return the file's sha256."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, buffer.getvalue())
    return sha256_file(path)


class Checkpoint:
    """A checkpoint file tied to one key: a checkpoint of another key, or damaged, is set
    aside and training starts from the beginning."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    def load(self) -> dict[str, Any] | None:
        state = load_torch(self.path)
        if state is None:
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            set_aside(self.path, "it belongs to another spec")
            return None
        note(f"resuming from {self.path} (epoch {state['epoch']} done)")
        return state

    def save(self, state: dict[str, Any]) -> None:
        save_torch(self.path, {**state, "key": self.key})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def failure_payload(key: str, spec: dict[str, Any], error: BaseException) -> dict[str, Any]:
    return {
        "key": key,
        "spec": spec,
        "status": "failed",
        "error": describe_failure(error),
        "traceback": traceback.format_exception(error),
    }


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run_dir(self, key: str) -> Path:
        return self.root / "runs" / key

    # --- runs ------------------------------------------------------------------------------

    def record(self, key: str) -> RunRecord | None:
        path = self.run_dir(key) / RECORD
        return read_json(path, lambda data: parse_record(data, path))

    def has_record(self, spec: RunSpec) -> bool:
        return self.record(spec.key) is not None

    def write_record(self, record: RunRecord) -> None:
        directory = self.run_dir(record.key)
        write_json(directory / RECORD, record.model_dump(mode="json"))
        (directory / ERROR).unlink(missing_ok=True)
        self.checkpoint(record.key).remove()

    def records(self, keys: list[str] | None = None) -> list[RunRecord]:
        """Every valid record (of `keys`, when given); damaged ones are set aside."""
        wanted = keys if keys is not None else [p.parent.name for p in self._glob(RECORD)]
        return [r for r in (self.record(key) for key in wanted) if r is not None]

    def _glob(self, name: str) -> list[Path]:
        return sorted(self.root.glob(f"runs/*/{name}"))

    def claim_path(self, key: str) -> Path:
        return self.run_dir(key) / "claim.lock"

    def is_running(self, key: str) -> bool:
        return is_locked(self.claim_path(key))

    def running_path(self, key: str) -> Path:
        return self.run_dir(key) / "running.json"

    def running_info(self, key: str) -> dict[str, Any] | None:
        """Host, pid and start time of the process running it (valid while it is claimed)."""
        try:
            return json.loads(self.running_path(key).read_text())
        except (OSError, ValueError):
            return None

    def queue(self, spec: RunSpec) -> None:
        """Write spec.json once: the run is known to the store from now on."""
        path = self.run_dir(spec.key) / SPEC
        if self.load_spec(spec.key) is None:
            write_json(path, spec.model_dump(mode="json"))

    def load_spec(self, key: str) -> RunSpec | None:
        return read_json(self.run_dir(key) / SPEC, RunSpec.model_validate)

    def run_keys(self) -> list[str]:
        return [path.parent.name for path in self._glob(SPEC)]

    def write_error(self, spec: RunSpec, error: BaseException) -> None:
        payload = failure_payload(spec.key, spec.model_dump(mode="json"), error)
        write_json(self.run_dir(spec.key) / ERROR, payload)

    def error(self, key: str) -> dict[str, Any] | None:
        return read_json(self.run_dir(key) / ERROR, _failure)

    def has_error(self, spec: RunSpec) -> bool:
        return self.error(spec.key) is not None

    def errors(self) -> list[dict[str, Any]]:
        found = [self.error(path.parent.name) for path in self._glob(ERROR)]
        return [e for e in found if e is not None]

    def clear_error(self, key: str) -> bool:
        """Move a failure aside (error.previous.json) so the run is tried again."""
        path = self.run_dir(key) / ERROR
        if not path.is_file():
            return False
        path.replace(path.with_name("error.previous.json"))
        return True

    # --- training artefacts ------------------------------------------------------------------

    def checkpoint(self, key: str) -> Checkpoint:
        return Checkpoint(self.run_dir(key) / CHECKPOINT, key)

    def save_training(
        self,
        key: str,
        info: dict[str, Any],
        states: dict[int, Any],
        method_state: dict[str, Any] | None = None,
    ) -> None:
        """The weights of every kept epoch (and, for a method that adapts at test time, its
        own trained parts), then training.json naming them with their sha256: training.json
        present means training is done."""
        directory = self.run_dir(key)
        weights = {}
        for epoch, state in sorted(states.items()):
            name = f"student-e{epoch}.pt"
            weights[str(epoch)] = {"file": name, "sha256": save_torch(directory / name, state)}
        if method_state is not None:
            digest = save_torch(directory / METHOD_WEIGHTS, method_state)
            weights[METHOD_ENTRY] = {"file": METHOD_WEIGHTS, "sha256": digest}
        write_json(directory / TRAINING, {**info, "key": key, "weights": weights})

    def is_trained(self, spec: RunSpec) -> bool:
        """Whether the run's training.json is there (whole or not: `training` checks)."""
        return (self.run_dir(spec.key) / TRAINING).is_file()

    def training(self, key: str) -> dict[str, Any] | None:
        """training.json, if it and every weights file it names are whole; otherwise the
        damaged files are set aside and the run trains again."""
        directory = self.run_dir(key)
        info = read_json(directory / TRAINING, _training(key))
        if info is None:
            return None
        for entry in info["weights"].values():
            path = directory / entry["file"]
            if not path.is_file() or sha256_file(path) != entry["sha256"]:
                why = "missing" if not path.is_file() else "its sha256 differs from training.json's"
                set_aside(directory / TRAINING, f"{entry['file']} is {why}")
                if path.is_file():
                    set_aside(path, "its sha256 differs from training.json's")
                return None
        return info

    def method_state(self, key: str, info: dict[str, Any]) -> dict[str, Any]:
        """The trained parts of a method that adapts at test time, saved with its student."""
        if METHOD_ENTRY not in info["weights"]:
            raise XdkdError(
                f"{self.run_dir(key)} holds no {METHOD_WEIGHTS} (trained before the method "
                "saved its parts); rerun to retrain"
            )
        return self.student_state(key, info, METHOD_ENTRY)

    def student_state(self, key: str, info: dict[str, Any], epoch: int | str) -> dict[str, Any]:
        entry = info["weights"][str(epoch)]
        state = load_torch(self.run_dir(key) / entry["file"], entry["sha256"])
        if state is None:
            raise XdkdError(f"{self.run_dir(key) / entry['file']} is damaged; rerun to retrain")
        return state

    # --- teachers ----------------------------------------------------------------------------

    def teacher_dir(self, spec: TeacherSpec) -> Path:
        return self.root / "teachers" / spec.key

    def teacher_lock(self, spec: TeacherSpec) -> Path:
        return self.teacher_dir(spec) / "train.lock"

    def teacher_checkpoint(self, spec: TeacherSpec) -> Checkpoint:
        return Checkpoint(self.teacher_dir(spec) / CHECKPOINT, spec.key)

    def has_teacher(self, spec: TeacherSpec) -> bool:
        return read_json(self.teacher_dir(spec) / TEACHER_INFO, _teacher(spec.key)) is not None

    def teacher_error(self, spec: TeacherSpec) -> str | None:
        payload = read_json(self.teacher_dir(spec) / ERROR, _failure)
        return None if payload is None else payload["error"]

    def write_teacher_error(self, spec: TeacherSpec, error: BaseException) -> None:
        payload = failure_payload(spec.key, spec.model_dump(mode="json"), error)
        write_json(self.teacher_dir(spec) / ERROR, payload)

    def load_teacher(self, spec: TeacherSpec) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(weights, info) of a trained teacher whose files are whole; None otherwise (a
        damaged teacher is set aside, to be trained again)."""
        directory = self.teacher_dir(spec)
        info = read_json(directory / TEACHER_INFO, _teacher(spec.key))
        if info is None:
            return None
        state = load_torch(directory / TEACHER_WEIGHTS, info["weights_sha256"])
        if state is None:
            set_aside(directory / TEACHER_INFO, f"its {TEACHER_WEIGHTS} is damaged or missing")
            return None
        return state, info

    def save_teacher(self, spec: TeacherSpec, state: dict[str, Any], info: dict[str, Any]) -> None:
        """Weights first, then the JSON (with their sha256) that marks the teacher complete."""
        directory = self.teacher_dir(spec)
        digest = save_torch(directory / TEACHER_WEIGHTS, state)
        payload = {"spec": spec.model_dump(mode="json"), **info, "weights_sha256": digest}
        write_json(directory / TEACHER_INFO, payload)
        (directory / ERROR).unlink(missing_ok=True)
        self.teacher_checkpoint(spec).remove()

    def teacher_keys(self) -> list[tuple[str, str]]:
        """(key, state) of every teacher directory: trained, failed or neither."""
        out = []
        for directory in sorted((self.root / "teachers").glob("*")):
            if (directory / TEACHER_INFO).is_file():
                out.append((directory.name, "trained"))
            elif (directory / ERROR).is_file():
                out.append((directory.name, "failed"))
        return out

    def clear_teacher_errors(self) -> None:
        for path in self.root.glob(f"teachers/*/{ERROR}"):
            path.replace(path.with_name("error.previous.json"))


def _failure(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        raise ValueError("no 'error' text")
    return data


def _training(key: str) -> Callable[[Any], dict[str, Any]]:
    def check(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("key") != key or "weights" not in data:
            raise ValueError("not this run's training.json")
        return data

    return check


def _teacher(key: str) -> Callable[[Any], dict[str, Any]]:
    def check(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or "weights_sha256" not in data or "key" not in data:
            raise ValueError("not a teacher.json of this version")
        if data["key"] != key:
            raise ValueError("another teacher's teacher.json")
        return data

    return check
