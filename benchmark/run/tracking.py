"""Experiment trackers (`xdkd run --log`, `$XDKD_LOG`): optional, off by default, local files
only, under `<runs dir>/logs/`.

- `tensorboard`: event files, one directory per run (`tensorboard/<run key>/`, teachers
  `tensorboard/teacher-<teacher key>/`).
- `mlflow`: a local file store (`mlflow/`), one experiment per suite (teachers: `teachers`),
  one MLflow run per run key, found again by its `xdkd_key` tag when a run resumes or is
  evaluated again.
- `wandb`: W&B in offline mode (`wandb/`); `wandb sync` uploads it later, if ever.

Trackers only receive values training already read on the host, so they add no sync and
change no number. Tags: `train/<loss term>` and `train/lr` every `LOG_EVERY` steps,
`train/epoch_loss` and `val/<curve>` at the end of each epoch (step: steps done), and
`final/<metric>` after evaluation; the spec goes in as parameters (dotted keys).
Importing this module imports no tracker package: `xdkd` checks `$XDKD_LOG` cheaply.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmark.errors import XdkdError
from benchmark.locks import file_lock
from benchmark.registry import unknown_name_message

# tracker -> the module it imports (also the name of its extra: pip install 'xdkd-bench[NAME]')
MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}

Params = dict[str, str | int | float | bool]


class Tracker:
    """What the harness and the training loop log to; this base logs nothing (no `--log`)."""

    def log_params(self, params: Params) -> None:
        """The run's settings, once, when it opens."""

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """Scalars by tag (`train/kd`) at a training step."""

    def close(self, failed: bool = False) -> None:
        """Flush and finish; `failed`: the run raised."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType
    ) -> None:
        self.close(failed=kind is not None)


class FanOut(Tracker):
    """Several trackers as one."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def log_params(self, params: Params) -> None:
        for tracker in self.trackers:
            tracker.log_params(params)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_metrics(values, step)

    def close(self, failed: bool = False) -> None:
        for tracker in self.trackers:
            tracker.close(failed)


class TensorBoardTracker(Tracker):
    """Event files in `<directory>/tensorboard/<run id>/`; parameters as a text table."""

    def __init__(self, directory: Path, run_name: str, run_id: str, experiment: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_name = run_name
        self.writer = SummaryWriter(log_dir=str(directory / "tensorboard" / run_id))

    def log_params(self, params: Params) -> None:
        rows = "\n".join(f"| {key} | {value} |" for key, value in params.items())
        self.writer.add_text("params", f"**{self.run_name}**\n\n| key | value |\n|---|---|\n{rows}")

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class MlflowTracker(Tracker):
    """A run in the local file store `<directory>/mlflow`, through its own `MlflowClient`,
    so runs sharing a process share no fluent-API state."""

    def __init__(self, directory: Path, run_name: str, run_id: str, experiment: str) -> None:
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless this is set;
        # the file store is the one backend that needs neither a server nor a database.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        root = directory / "mlflow"
        root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=root.resolve().as_uri())
        # one lock for the sweep's processes: the file store's name check is not atomic
        with file_lock(directory / "mlflow.lock"):
            experiment_id = self._experiment_id(experiment)
            self.run_id = self._run_id(experiment_id, run_name, run_id)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def _run_id(self, experiment_id: str, run_name: str, key: str) -> str:
        """The MLflow run of this run key (a resumed or re-evaluated run logs on), or a new one."""
        found = self.client.search_runs([experiment_id], f"tags.xdkd_key = '{key}'", max_results=1)
        if found:
            self.client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags={"xdkd_key": key})
        return run.info.run_id

    def log_params(self, params: Params) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class WandbTracker(Tracker):
    """A W&B run in offline mode under `<directory>/wandb`; `wandb sync` uploads it later."""

    def __init__(self, directory: Path, run_name: str, run_id: str, experiment: str) -> None:
        import wandb

        root = directory / "wandb"
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=experiment, name=run_name, id=run_id, dir=str(root), mode="offline"
        )

    def log_params(self, params: Params) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


OPENERS: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "mlflow": MlflowTracker,
    "wandb": WandbTracker,
}


def parse_tracker_names(text: str, origin: str) -> list[str]:
    """The tracker names of a comma-separated list, each known and installed; `origin` (the
    option or variable, `--log ` or `XDKD_LOG=`) starts the one-line error otherwise."""
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    for name in names:
        if name not in MODULES:
            raise XdkdError(f"{origin}{name}: {unknown_name_message('tracker', name, [*MODULES])}")
        if importlib.util.find_spec(MODULES[name]) is None:
            raise XdkdError(
                f"{origin}{name} needs the {MODULES[name]} package: "
                f"pip install 'xdkd-bench[{name}]'"
            )
    return names


def tracker_names_from_env() -> list[str]:
    """$XDKD_LOG (`xdkd run --log`): the trackers every process of a sweep logs to, so
    workers and cluster tasks log like the driver asked; none when unset."""
    return parse_tracker_names(os.environ.get("XDKD_LOG", ""), "XDKD_LOG=")


def open_trackers(
    names: list[str], directory: Path, run_name: str, run_id: str, experiment: str
) -> Tracker:
    """One tracker over `names` (the do-nothing one for none), files under `directory`."""
    opened: list[Tracker] = []
    try:
        for name in names:
            opened.append(OPENERS[name](directory, run_name, run_id, experiment))
    except BaseException:
        FanOut(opened).close(failed=True)
        raise
    return FanOut(opened) if opened else Tracker()


def spec_params(spec: dict[str, Any], prefix: str = "") -> Params:
    """A spec (`model_dump(mode="json")`) as flat dotted keys; lists, empty dicts and None
    as JSON text, since trackers take scalars only."""
    params: Params = {}
    for key, value in spec.items():
        if isinstance(value, dict) and value:
            params.update(spec_params(value, f"{prefix}{key}."))
        elif isinstance(value, str | int | float | bool):
            params[f"{prefix}{key}"] = value
        else:
            params[f"{prefix}{key}"] = json.dumps(value)
    return params
