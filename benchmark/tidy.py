"""Run records as one tidy table: a row per run, a column per metric, under a selection rule.

Records are read as plain JSON rather than through `RunRecord`, so records written by older
code (fewer metrics, fewer spec fields, no robustness) still make a table: reporting must
never be the reason an old result can no longer be read.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import RunRecord
from benchmark.errors import XdkdError
from benchmark.methods import METHODS
from benchmark.metrics import corruption_errors, mean_corruption_accuracy

# A rule that looked at target labels would be named "oracle", and only that; none is offered.
SELECTION_RULES = {
    "last": "last epoch (no model selection)",
    "source-val": "training-domain validation (source-validation accuracy)",
}
# The in-suite robustness reference: this method, same student, pair and seed.
ROBUSTNESS_REFERENCE = "source_only"
CELL = ["pair", "teacher", "student", "method", "protocol"]
# The metrics a selection rule chooses an epoch for; cost and robustness are the last epoch's.
CLEAN_METRICS = ("target_acc", "target_ece", "target_nll", "source_acc", "heldout_mean_acc")


def is_reference(method: str) -> bool:
    """The teacher and the target-label oracle are references: shown, never ranked."""
    cls = METHODS.get(method) if method in METHODS else None
    return cls is not None and (not cls.trains_student or cls.needs_target_labels)


def config_hash(spec: dict[str, Any]) -> str:
    """The spec's hash without suite and seed: equal across the seeds of one configuration,
    different as soon as anything else (recipe, method parameters, image size) changed."""
    rest = {k: v for k, v in spec.items() if k not in ("suite", "seed")}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:16]


def cell_of(spec: dict[str, Any]) -> dict[str, str]:
    """The (pair, teacher, student, method, protocol) a run belongs to; its seeds repeat it."""
    return {
        "pair": f"{spec['pair']['source']}→{spec['pair']['target']}",
        "teacher": spec["teacher"]["name"],
        "student": spec["student"]["name"],
        "method": spec["method"]["name"],
        "protocol": spec["protocol"],
    }


def as_dicts(records: list[RunRecord] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") if isinstance(r, RunRecord) else r for r in records]


def load_runs(runs_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every record.json and error.json under `runs_dir`, at any depth, so `runs/`,
    `runs/SUITE` and `runs/SUITE/runs` all work."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise XdkdError(f"runs directory '{runs_dir}' not found; xdkd run writes runs/SUITE")

    def read(name: str) -> list[dict[str, Any]]:
        found = []
        for path in sorted(runs_dir.rglob(name)):
            try:
                found.append(json.loads(path.read_text()))
            except json.JSONDecodeError as error:
                raise XdkdError(f"{path}: not valid JSON ({error}); delete it to rerun") from None
        return found

    # the same run can sit in two stores under runs_dir (its key ignores the suite): once
    records = list({r["key"]: r for r in read("record.json")}.values())
    recorded = {r["key"] for r in records}
    return records, [e for e in read("error.json") if e.get("key") not in recorded]


def _cells(robustness: dict[str, Any]) -> dict[tuple[str, int], float]:
    """`{"gaussian_noise/1": acc}` as `{("gaussian_noise", 1): acc}`, only the corruptions
    that count in mCA/mCE (the 15 of ImageNet-C; unknown names are kept)."""
    from benchmark.corruptions import CORRUPTIONS

    cells = {}
    for name, value in (robustness.get("cells") or {}).items():
        corruption, _, severity = name.rpartition("/")
        if corruption not in CORRUPTIONS or CORRUPTIONS.get(corruption).counted:
            cells[(corruption, int(severity))] = float(value)
    return cells


def _selected_metrics(record: dict[str, Any], selection: str) -> dict[str, float]:
    """The record's metrics with the selected epoch's clean metrics laid over them; a record
    without a selected epoch has no clean numbers under `source-val`, not last-epoch ones."""
    metrics = dict(record["metrics"])
    if selection == "last":
        return metrics
    overlay = {key: math.nan for key in CLEAN_METRICS} | (record.get("selected") or {})
    if metrics.get("teacher_target_acc"):
        overlay["knowledge_recovery"] = overlay["target_acc"] / metrics["teacher_target_acc"]
    return metrics | overlay


def _row(record: dict[str, Any], selection: str) -> dict[str, Any]:
    spec = record["spec"]
    method = spec["method"]["name"]
    robustness = record.get("robustness") or {}
    cells = _cells(robustness)
    metrics = _selected_metrics(record, selection)
    if "mca" not in metrics and cells:
        metrics["mca"] = mean_corruption_accuracy(cells)
    teacher = record.get("teacher") or {}
    return {
        "suite": spec.get("suite", ""),
        "key": record["key"],
        "config": config_hash(spec),
        **cell_of(spec),
        "source": spec["pair"]["source"],
        "target": spec["pair"]["target"],
        "family": METHODS.get(method).family if method in METHODS else "unknown",
        "reference": is_reference(method),
        "seed": spec["seed"],
        **metrics,
        "clean_acc": robustness.get("clean_acc", record["metrics"].get("target_acc")),
        "teacher_source_acc": teacher.get("source_accuracy", math.nan),
        "teacher_below_floor": bool(teacher.get("below_floor", False)),
        "teacher_floor": teacher.get("floor", math.nan),
        "wall_time_s": record.get("wall_time_s", math.nan),
        "device": record.get("device", ""),
        "code": (record.get("provenance") or {}).get("code", ""),
        "cells": cells,
    }


def _with_corruption_errors(table: pd.DataFrame) -> pd.DataFrame:
    """mCE and relative mCE (%) against the in-suite reference run: `source_only` with the
    same student on the same pair and seed (preferring the same protocol and teacher)."""
    refs = table[(table["method"] == ROBUSTNESS_REFERENCE) & table["cells"].map(bool)]
    mce, rel = [], []
    for row in table.itertuples():
        candidates = refs[
            (refs["pair"] == row.pair)
            & (refs["student"] == row.student)
            & (refs["seed"] == row.seed)
        ]
        if not row.cells or candidates.empty:
            mce.append(math.nan)
            rel.append(math.nan)
            continue
        score = (candidates["protocol"] == row.protocol) * 2 + (
            candidates["teacher"] == row.teacher
        )
        ref = candidates.loc[score.idxmax()]
        common = {cell: acc for cell, acc in row.cells.items() if cell in ref["cells"]}
        errors = corruption_errors(common, row.clean_acc, ref["cells"], ref["clean_acc"])
        mce.append(100 * _mean(e["ce"] for e in errors.values()))
        rel.append(100 * _mean(e["relative_ce"] for e in errors.values()))
    return table.assign(mce=mce, relative_mce=rel)


def _mean(values: Any) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def records_table(
    records: list[RunRecord] | list[dict[str, Any]], selection: str = "last"
) -> pd.DataFrame:
    """One row per run, every metric a column; accuracies stay fractions 0..1, mCE and
    relative mCE are percentages (100 = as robust as the reference)."""
    if selection not in SELECTION_RULES:
        raise XdkdError(f"unknown selection '{selection}'; choose {', '.join(SELECTION_RULES)}")
    rows = [_row(record, selection) for record in as_dicts(records)]
    if not rows:
        raise XdkdError("no run records found; run a suite first (xdkd run SUITE)")
    table = _with_corruption_errors(pd.DataFrame(rows))
    return table.drop(columns="cells")


def severity_table(records: list[RunRecord] | list[dict[str, Any]]) -> pd.DataFrame:
    """Long table for severity curves: one row per (run, severity), severity 0 = clean,
    accuracy the mean over the counted corruptions at that severity."""
    rows = []
    for record in as_dicts(records):
        robustness = record.get("robustness") or {}
        cells = _cells(robustness)
        spec = record["spec"]
        base = {"method": spec["method"]["name"], "seed": spec["seed"], "key": record["key"]}
        if cells:
            clean = robustness.get("clean_acc", record["metrics"].get("target_acc"))
            rows.append({**base, "severity": 0, "acc": clean})
        for severity in sorted({s for _, s in cells}):
            values = [acc for (_, s), acc in cells.items() if s == severity]
            rows.append({**base, "severity": severity, "acc": sum(values) / len(values)})
    return pd.DataFrame(rows, columns=["method", "seed", "key", "severity", "acc"])
