"""Run records as one tidy table: a row per run, a column per metric, under a selection rule.

Records are read through the store, so a damaged one is set aside with a note instead of
being trusted, and one of an older format is refused with a line saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import XdkdError
from benchmark.suite.config import grid_label
from benchmark.suite.metrics import (
    METRICS,
    chance_bound,
    corruption_errors,
    mean_corruption_accuracy,
    metric,
)
from benchmark.suite.protocols import PROTOCOLS
from benchmark.suite.selection import RULES, under_trained
from benchmark.suite.specs import RunRecord

# The in-suite robustness reference: this method, same student, pair and seed.
ROBUSTNESS_REFERENCE = "source_only"
CELL = ["pair", "teacher", "student", "method", "protocol"]


def method_card(method: str):
    from benchmark.suite.catalogue import catalogue

    return catalogue().methods.get(method)


def config_hash(spec: dict[str, Any]) -> str:
    """The spec's hash without suite and seed: equal across the seeds of one configuration,
    different as soon as anything else (recipe, method parameters, image size) changed."""
    rest = {k: v for k, v in spec.items() if k not in ("suite", "seed")}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:16]


def cell_of(spec: dict[str, Any]) -> dict[str, str]:
    """The (pair, teacher, student, method, protocol) a run belongs to; its seeds repeat it."""
    from benchmark.suite.specs import RunSpec

    parsed = RunSpec.model_validate(spec)
    return {
        "pair": parsed.setting.label,
        "teacher": parsed.teacher.name,
        "student": parsed.student.name,
        "method": parsed.method.row,
        "protocol": parsed.setting.protocol.label,
    }


def load_runs(runs_dir: Path) -> tuple[list[RunRecord], list[dict[str, Any]]]:
    """Every record and failure under `runs_dir`, at any depth, so `runs/`, `runs/SUITE` and
    `runs/SUITE/runs` all work; damaged files are set aside (with a note) and left out."""
    from benchmark.store import ERROR, RECORD, _failure, parse_record, read_json

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        what = "is a file, not a directory" if runs_dir.exists() else "not found"
        raise XdkdError(f"runs directory '{runs_dir}' {what}; xdkd run writes runs/SUITE")
    records: dict[str, RunRecord] = {}
    for path in sorted(runs_dir.rglob(RECORD)):
        record = read_json(path, lambda data, path=path: parse_record(data, path))
        if record is not None:  # the same run in two stores under runs_dir: once
            records.setdefault(record.key, record)
    errors = [read_json(path, _failure) for path in sorted(runs_dir.rglob(ERROR))]
    errors = [e for e in errors if e is not None and e.get("key") not in records]
    return list(records.values()), errors


def _cells(robustness: dict[str, Any]) -> dict[str, tuple[float, dict[tuple[str, int], float]]]:
    """Per scored item: (clean-subset accuracy, {(corruption, severity): accuracy}) over the
    corruptions that count in mCA/mCE (the 15 of ImageNet-C)."""
    from benchmark.suite.catalogue import catalogue

    known = catalogue().corruptions
    out = {}
    for item, block in (robustness.get("items") or {}).items():
        cells = {}
        for name, value in (block.get("cells") or {}).items():
            corruption, _, severity = name.rpartition("/")
            if corruption not in known or known[corruption].counted:
                cells[(corruption, int(severity))] = float(value)
        if cells:
            out[item] = (float(block["clean_subset_acc"]), cells)
    return out


def method_row(record: RunRecord) -> str:
    """The run's row label: its method's, marked `(external)` for a checkpoint trained outside
    the suite, so that it never merges into a suite method's row of the same name."""
    row = record.spec.method.row
    return f"{row} (external)" if record.external is not None else row


def chance(record: RunRecord) -> float:
    """The accuracy under which a run of this record's classes counts as at chance (the
    training loop's rule: `chance_bound`)."""
    return chance_bound(len(record.saw.get("classes") or []) or 10)


def at_chance(record: RunRecord) -> bool:
    """The one rule for a finished run at chance, the same for every method: at the end of
    training its target accuracy, its source test accuracy or its source-validation accuracy
    is under `chance`. Such a run is recorded, ranked as measured
    and flagged; a run whose loss became NaN or rose while it ended at chance on source
    validation failed in training (`benchmark.run.train.divergence`) and is a failed run."""
    values = [record.metrics.get("target_acc"), record.metrics.get("source_acc")]
    values.append((record.curves.get("source_val_acc") or [None])[-1])
    return any(v is not None and v == v and v < chance(record) for v in values)


def no_validation_signal(record: RunRecord) -> bool:
    """Whether a run's source-validation curve is at chance at every epoch (black-box DINE's
    students): source-validation selection would pick its epoch by noise."""
    curve = [v for v in record.curves.get("source_val_acc", []) if v == v]
    return bool(curve) and max(curve) < chance(record)


def _selected_metrics(record: RunRecord, selection: str) -> dict[str, float]:
    """The record's metrics with the chosen epoch's clean metrics laid over them; a record
    the rule chose no epoch for has no clean numbers under it, not last-epoch ones (an
    external record's one model is what every rule has to choose from, and a data-free run,
    which no real image may steer, keeps its last epoch under every rule)."""
    metrics = dict(record.metrics)
    card = method_card(record.spec.method.name)
    untrained = card is not None and not card.trains_student
    data_free = not PROTOCOLS[record.spec.setting.protocol.name].real_images
    if selection == "last" or untrained or data_free or record.external is not None:
        return metrics
    if RULES[selection].curve == "source_val_acc" and no_validation_signal(record):
        return metrics  # a curve at chance throughout carries no signal: the last epoch
    chosen = record.selected.get(selection)
    selectable = [k for k in metrics if k.partition("/")[0] in METRICS and metric(k).selection]
    overlay = {key: math.nan for key in selectable} | (chosen or {})
    overlay.pop("epoch", None)
    return metrics | overlay


def _row(record: RunRecord, selection: str) -> dict[str, Any]:
    spec = record.spec
    card = method_card(spec.method.name)
    external = record.external is not None
    config = spec.model_dump(mode="json")
    if external:  # two checkpoints under one label are two configurations
        config["external"] = record.external.get("sha256")
    teachers = record.teachers
    cells = _cells(record.robustness)
    metrics = _selected_metrics(record, selection)
    if cells:
        metrics.setdefault("mca", _mean(mean_corruption_accuracy(c) for _, c in cells.values()))
        metrics.setdefault("clean_subset_acc", _mean(clean for clean, _ in cells.values()))
    return {
        "suite": spec.suite,
        "key": record.key,
        "config": config_hash(config),
        **cell_of(spec.model_dump(mode="json")),
        **({"method": method_row(record), "teacher": "–"} if external else {}),
        # the method without its grid cell, and the cell: a grid's rows compare within a cell
        "method_name": spec.method.label or spec.method.name,
        "grid": grid_label(spec.method.grid) if spec.method.grid else "",
        # an A/A control: measures the null spread, never ranked or compared
        "control": spec.method.stream is not None,
        "source": "+".join(spec.setting.sources),
        "target": "+".join(spec.setting.targets),
        "family": "external" if external else card.family if card else "unknown",
        # shown, never ranked: what an external checkpoint trained on is not known
        "reference": external or bool(card and card.reference),
        "external": external,
        "seed": spec.seed,
        **metrics,
        "selected_epoch": (record.selected.get(selection) or {}).get("epoch", math.nan),
        "under_trained": under_trained(record.curves),
        "at_chance": at_chance(record),
        "last_epoch_fallback": selection != "last" and no_validation_signal(record),
        "teacher_source_acc": min((t["source_accuracy"] for t in teachers), default=math.nan),
        "teacher_below_floor": any(t["below_floor"] for t in teachers),
        "teacher_floor": teachers[0]["floor"] if teachers else math.nan,
        "wall_time_s": record.wall_time_s,
        "device": record.device,
        "code": record.provenance.get("code", ""),
        "cells": cells,
    }


def _with_corruption_errors(table: pd.DataFrame) -> pd.DataFrame:
    """mCE and relative mCE (%) against the in-suite reference run: `source_only` with the
    same student on the same pair and seed (preferring the same protocol and teacher), item
    by item, averaged over a run's items."""
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
        reference = candidates.loc[score.idxmax()]["cells"]
        per_item_ce, per_item_rel = [], []
        for item, (clean, cells) in row.cells.items():
            if item not in reference:
                continue
            ref_clean, ref_cells = reference[item]
            common = {cell: acc for cell, acc in cells.items() if cell in ref_cells}
            errors = corruption_errors(common, clean, ref_cells, ref_clean)
            per_item_ce.append(_mean(e["ce"] for e in errors.values()))
            per_item_rel.append(_mean(e["relative_ce"] for e in errors.values()))
        mce.append(100 * _mean(per_item_ce))
        rel.append(100 * _mean(per_item_rel))
    return table.assign(mce=mce, relative_mce=rel)


def _mean(values: Any) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def records_table(records: list[RunRecord], selection: str = "source-val") -> pd.DataFrame:
    """One row per run, every metric a column; accuracies stay fractions 0..1, mCE and
    relative mCE are percentages (100 = as robust as the reference)."""
    if selection not in RULES:
        raise XdkdError(f"unknown selection '{selection}'; choose {', '.join(RULES)}")
    if not records:
        raise XdkdError("no run records found; run a suite first (xdkd run SUITE)")
    rows = [_row(record, selection) for record in records]
    table = _with_corruption_errors(pd.DataFrame(rows))
    return table.drop(columns="cells")


def severity_table(records: list[RunRecord]) -> pd.DataFrame:
    """Long table for severity curves: one row per (run, severity), severity 0 = the clean
    robustness set, accuracy the mean over the counted corruptions (and items)."""
    rows = []
    for record in records:
        base = {"method": method_row(record), "seed": record.spec.seed, "key": record.key}
        items = _cells(record.robustness)
        if not items:
            continue
        rows.append({**base, "severity": 0, "acc": _mean(clean for clean, _ in items.values())})
        severities = sorted({s for _, cells in items.values() for _, s in cells})
        for severity in severities:
            values = [
                acc for _, cells in items.values() for (_, s), acc in cells.items() if s == severity
            ]
            rows.append({**base, "severity": severity, "acc": sum(values) / len(values)})
    return pd.DataFrame(rows, columns=["method", "seed", "key", "severity", "acc"])
