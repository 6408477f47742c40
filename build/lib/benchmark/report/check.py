"""`xdkd check`: new results against a committed baseline, cell by cell, for CI.

A cell is (pair, teacher, student, method, protocol); its seeds are its repeats. A change is
signed so that worse is negative (lower ECE/NLL is better) and measured in points (percentage
points for accuracies and ECE). A cell regresses when its change is below
-max(abs_tol, machine noise, z * SE), SE paired over seeds when both sides ran the same seeds,
else from the two groups; the suite drifts when a metric's mean change over all cells is below
-max(drift, machine noise). The machine noise is how far a cell's mean may move on another
machine with the same spec and seeds (other kernels sum in another order), in points, stated in
the baseline when it was written (`--machine-noise`); paired seeds do not cancel it. A
baseline written with `--noise-from RUNS` (the same specs run on another machine or kernel
set) carries each cell's own measured noise per metric, the |paired mean change| between the
two; that cell's bound is then at least NOISE_MARGIN times it, so a stable cell (kd) gets a
tight bound and a chaotic one (a source-only student on a hard shift) a loose one, instead of
one machine-wide number that is either too loose for the first or too tight for the second.

Exit codes: 0 fine; 1 a regression, a failed run or drift; 3 (unless --allow-missing) cells
missing or incomparable; 2 bad usage (raised as XdkdError). A regression outranks a missing
cell, since it is the more urgent news.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import XdkdError
from benchmark.report.stats import change_and_se
from benchmark.report.tidy import CELL, cell_of, load_runs, records_table
from benchmark.suite.metrics import metric as metric_info

FORMAT = "xdkd-baseline/2"
DEFAULT_METRICS = ("target_acc", "heldout_mean_acc", "mca")
STORED_SKIP = ("seed", "teacher_floor", "selected_epoch")
NOISE_MARGIN = 2.0  # a cell's bound: this many times the noise measured on one other machine
NUMBERS = (
    "baseline",
    "spread",
    "current",
    "change",
    "se",
    "noise",
    "threshold",
    "paired",
    "n_base",
    "n_new",
)
COMPARED = ("pass", "improved", "regressed")
ALL = "(all)"  # the metric of a whole-cell outcome: failed, missing, new, incomparable
OUTCOMES = ("regressed", "failed", "missing", "incomparable", "new", "improved", "pass")


@dataclass
class Settings:
    """Tolerances: `abs_tol` and `z` map a metric (or '*', every other metric) to a value."""

    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    abs_tol: dict[str, float] = field(default_factory=lambda: {"*": 0.5})
    z: dict[str, float] = field(default_factory=lambda: {"*": 2.0})
    drift: float = 0.25
    allow_missing: bool = False
    selection: str | None = None  # None: the baseline's
    machine_noise: float | None = None  # points; None: the baseline's (0 if it states none)

    def describe(self) -> str:
        def values(mapping: dict[str, float]) -> str:
            return ", ".join(f"{v:g}" if k == "*" else f"{k}={v:g}" for k, v in mapping.items())

        noise = f"; machine noise {self.machine_noise:g}" if self.machine_noise else ""
        return f"abs_tol {values(self.abs_tol)}; z {values(self.z)}{noise}"

    def tolerance(self, metric: str) -> tuple[float, float]:
        return self.abs_tol.get(metric, self.abs_tol["*"]), self.z.get(metric, self.z["*"])


def sign(name: str) -> int:
    """Worse is negative: -1 for a metric where lower is better (the metrics registry)."""
    return -1 if metric_info(name).better == "min" else 1


def scale(name: str) -> float:
    """Changes are compared in the metric's shown unit (points for a percentage)."""
    return metric_info(name).scale


# --- the baseline file -------------------------------------------------------------------


def measured_noise(
    seeds: dict[str, dict[str, Any]], other: pd.DataFrame, metrics: list[str]
) -> dict[str, float]:
    """Per metric, in points: how far the cell's mean moved on another machine (`other`,
    its rows of the noise runs), paired over common seeds: the larger of |mean change| and
    the per-seed changes' root mean square over sqrt(n), the size a mean of n such changes
    has when they do not happen to cancel."""
    there = {str(row["seed"]): row.dropna().to_dict() for _, row in other.iterrows()}
    noise = {}
    for name in metrics:
        base, new = _seed_values(seeds, name), _seed_values(there, name)
        common = sorted(set(base) & set(new))
        if common:
            changes = np.array([new[s] - base[s] for s in common])
            typical = float(np.sqrt(np.mean(changes**2) / len(changes)))
            noise[name] = max(abs(float(changes.mean())), typical)
    return noise


def baseline_from_runs(
    runs_dir: Path,
    selection: str,
    command: str,
    machine_noise: float = 0.0,
    noise_from: Path | None = None,
) -> dict[str, Any]:
    """Per cell: its configuration hash and, per seed, the run's spec hash and every metric;
    with `noise_from`, the cell's measured noise per metric (`measured_noise`); the machine
    noise (points) every check against it allows."""
    records, _ = load_runs(runs_dir)
    table = records_table(records, selection)
    others = None
    if noise_from is not None:
        other_records, _ = load_runs(noise_from)
        others = records_table(other_records, selection) if other_records else None
        if others is None:
            raise XdkdError(f"--noise-from {noise_from}: no run records there")
    for name in DEFAULT_METRICS[:1]:
        if name not in table or table[name].isna().all():
            raise XdkdError(
                f"under --selection {selection} no run under {runs_dir} has {name} (did they "
                "hold out no source validation? source_validation: 0); a baseline without it "
                "would check nothing; use --selection last"
            )
    metrics = [c for c in table.select_dtypes("number").columns if c not in STORED_SKIP]
    cells = []
    for cell, group in table.groupby(CELL, sort=True):
        if group["config"].nunique() > 1:
            raise XdkdError(
                f"cell {' '.join(cell)} has runs of {group['config'].nunique()} configurations "
                f"under {runs_dir}; point --update-baseline at one suite's runs"
            )
        seeds = {
            str(row["seed"]): {"key": row["key"]}
            | {m: float(row[m]) for m in metrics if not pd.isna(row[m])}
            for _, row in group.iterrows()
        }
        config = group["config"].iloc[0]
        entry = {**dict(zip(CELL, cell, strict=True)), "config": config, "seeds": seeds}
        if others is not None:
            same = others[(others["key"].isin(group["key"])) & (others["config"] == config)]
            if same.empty:
                raise XdkdError(
                    f"--noise-from {noise_from}: no run of cell {' '.join(cell)}; run the "
                    "same suite there"
                )
            entry["noise"] = measured_noise(seeds, same, list(DEFAULT_METRICS))
        cells.append(entry)
    return {
        "format": FORMAT,
        "selection": selection,
        "machine_noise": machine_noise,
        "made_by": command,
        "code": sorted(set(table["code"]) - {""}),
        "cells": cells,
    }


def write_baseline(
    path: Path,
    runs_dir: Path,
    selection: str,
    command: str,
    machine_noise: float = 0.0,
    noise_from: Path | None = None,
) -> int:
    """Write the baseline file; return its number of cells."""
    baseline = baseline_from_runs(runs_dir, selection, command, machine_noise, noise_from)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline, indent=1, ensure_ascii=False) + "\n")
    return len(baseline["cells"])


def read_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise XdkdError(f"baseline file '{path}' not found; write one with --update-baseline")
    try:
        baseline = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise XdkdError(f"baseline file '{path}' is not valid JSON: {error}") from None
    if not isinstance(baseline, dict) or baseline.get("format") != FORMAT:
        raise XdkdError(
            f"'{path}' is not an xdkd baseline of this version ({FORMAT}); remake it with "
            "xdkd check --baseline FILE RUNS_DIR --update-baseline"
        )
    cells = baseline.get("cells")
    if not isinstance(cells, list):
        raise XdkdError(f"baseline file '{path}' has no list of cells; remake it")
    for index, cell in enumerate(cells):
        missing = [k for k in (*CELL, "config", "seeds") if k not in (cell or {})]
        seeds = (cell or {}).get("seeds")
        if (
            missing
            or not isinstance(seeds, dict)
            or not all(isinstance(v, dict) for v in seeds.values())
        ):
            what = f"lacks {', '.join(missing)}" if missing else "has no per-seed values"
            raise XdkdError(f"baseline file '{path}': cell {index} {what}; remake the baseline")
    return baseline


# --- comparison --------------------------------------------------------------------------


def _seed_values(seeds: dict[str, dict[str, float]], metric: str) -> dict[str, float]:
    factor = sign(metric) * scale(metric)
    return {s: factor * v[metric] for s, v in seeds.items() if metric in v}


def _metric_row(
    base: dict[str, float], new: dict[str, float], metric: str, settings: Settings, noise: float
) -> dict[str, Any]:
    """Outcome and numbers of one metric of a cell present on both sides; `noise`: the
    cell's measured noise for it (0 where the baseline measured none)."""
    change, se, paired = change_and_se(base, new)
    abs_tol, z = settings.tolerance(metric)
    threshold = max(abs_tol, settings.machine_noise or 0.0, NOISE_MARGIN * noise, z * se)
    outcome = "pass"
    if abs(change) > threshold:
        outcome = "improved" if change > 0 else "regressed"
    values = np.array(list(base.values()))
    return {
        "outcome": outcome,
        "baseline": sign(metric) * float(values.mean()),
        "spread": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
        "current": sign(metric) * float(np.mean(list(new.values()))),
        "change": change,
        "se": se,
        "noise": noise,
        "threshold": threshold,
        "paired": paired,
    }


def compare_cell(
    cell: dict[str, Any], runs: pd.DataFrame, failed: dict[tuple, str], settings: Settings
) -> list[dict[str, Any]]:
    """One row per metric of a baseline cell; `runs` are the current runs of this cell."""
    head = {c: cell[c] for c in CELL}
    same = runs[runs["config"] == cell["config"]]
    whole_cell = None
    if (key := tuple(cell[c] for c in CELL)) in failed:
        whole_cell = ("failed", failed[key])
    elif same.empty and len(runs):
        whole_cell = ("incomparable", f"config {cell['config']} is now {runs['config'].iloc[0]}")
    elif same.empty:
        whole_cell = ("missing", "no runs")
    if whole_cell:
        return [{**head, "metric": ALL, "outcome": whole_cell[0], "detail": whole_cell[1]}]
    current = {str(row["seed"]): row.dropna().to_dict() for _, row in same.iterrows()}
    rows = []
    for metric in settings.metrics:
        base, new = _seed_values(cell["seeds"], metric), _seed_values(current, metric)
        if base or new:
            row = {**head, "metric": metric, "n_base": len(base), "n_new": len(new)}
            if base and new:
                noise = float(cell.get("noise", {}).get(metric, 0.0))
                rows.append(row | _metric_row(base, new, metric, settings, noise))
            else:
                outcome = "new" if new else "missing"
                rows.append(row | {"outcome": outcome, "detail": f"{metric} only on one side"})
    return rows


def compare(
    baseline: dict[str, Any], table: pd.DataFrame, errors: list[dict[str, Any]], settings: Settings
) -> pd.DataFrame:
    """Every cell of the baseline and of the current runs, one row per metric."""
    failed = {}
    for error in errors:
        failed.setdefault(tuple(cell_of(error["spec"]).values()), error.get("error", "failed"))
    groups = {key: group for key, group in table.groupby(CELL)} if len(table) else {}
    empty = table.iloc[0:0] if len(table) else pd.DataFrame(columns=[*CELL, "config", "seed"])
    rows = []
    for cell in baseline["cells"]:
        key = tuple(cell[c] for c in CELL)
        rows += compare_cell(cell, groups.pop(key, empty), failed, settings)
        failed.pop(key, None)
    for key in dict.fromkeys([*groups, *failed]):
        outcome = "failed" if key in failed else "new"
        head = dict(zip(CELL, key, strict=True))
        rows.append({**head, "metric": ALL, "outcome": outcome, "detail": failed.get(key, "")})
    return pd.DataFrame(rows, columns=[*CELL, "metric", "outcome", *NUMBERS, "detail"])


def drift(rows: pd.DataFrame, bound: float) -> pd.DataFrame:
    """Per metric: the mean change over all compared cells, and whether it is below -bound
    (at least NOISE_MARGIN times the cells' mean measured noise of the metric)."""
    compared = rows[rows["outcome"].isin(COMPARED)]
    grouped = compared.groupby("metric")
    out = grouped["change"].agg(["mean", "count"])
    out["bound"] = (NOISE_MARGIN * grouped["noise"].mean().fillna(0.0)).clip(lower=bound)
    out = out.reset_index()
    out["drifted"] = out["mean"] < -out["bound"]
    return out


def exit_code(rows: pd.DataFrame, drifts: pd.DataFrame, allow_missing: bool) -> int:
    outcomes = set(rows["outcome"])
    if outcomes & {"regressed", "failed"} or drifts["drifted"].any():
        return 1
    if outcomes & {"missing", "incomparable"} and not allow_missing:
        return 3
    return 0


# --- the whole check ---------------------------------------------------------------------


@dataclass
class Result:
    rows: pd.DataFrame
    drift: pd.DataFrame
    exit_code: int
    summary: str


def run_check(runs_dir: Path, baseline_path: Path, settings: Settings) -> Result:
    """Compare the runs under `runs_dir` with the baseline file."""
    baseline = read_baseline(baseline_path)
    if settings.machine_noise is None:
        settings.machine_noise = float(baseline.get("machine_noise", 0.0))
    selection = settings.selection or baseline["selection"]
    records, errors = load_runs(runs_dir)
    table = records_table(records, selection) if records else pd.DataFrame()
    known = set(table.columns) | {
        m for c in baseline["cells"] for s in c["seeds"].values() for m in s
    }
    for name in settings.metrics:
        try:
            metric_info(name)
        except KeyError as error:
            raise XdkdError(f"--metrics: {error.args[0]}") from None
    unknown = [m for m in settings.metrics if m not in known and m not in DEFAULT_METRICS]
    if unknown:
        raise XdkdError(f"--metrics: no run or baseline cell has '{unknown[0]}'")
    if selection != baseline["selection"]:
        raise XdkdError(
            f"the baseline was made with --selection {baseline['selection']}, not {selection}"
        )
    rows = compare(baseline, table, errors, settings)
    drifts = drift(rows, max(settings.drift, settings.machine_noise))
    code = exit_code(rows, drifts, settings.allow_missing)
    summary = markdown_summary(rows, drifts, code, baseline_path, runs_dir, settings)
    return Result(rows, drifts, code, summary)


VERDICT = {0: "PASS", 1: "REGRESSED", 3: "INCOMPLETE"}


def markdown_summary(
    rows: pd.DataFrame,
    drifts: pd.DataFrame,
    code: int,
    baseline_path: Path,
    runs_dir: Path,
    settings: Settings,
) -> str:
    counts = rows["outcome"].value_counts().reindex(OUTCOMES, fill_value=0)
    lines = [
        f"## xdkd check: {VERDICT[code]} (exit {code})",
        f"Runs in `{runs_dir}` against baseline `{baseline_path}`, "
        f"{rows[CELL].drop_duplicates().shape[0]} cells, metrics {', '.join(settings.metrics)}. "
        "One row per cell and metric (failed, missing, new, incomparable: one per cell). "
        "A change is signed so worse is negative, in points; a cell regresses below "
        f"-max(abs_tol, machine noise, {NOISE_MARGIN:g} × the cell's measured noise, z·SE) "
        f"({settings.describe()}); the suite drifts when a metric's mean change is below "
        f"-max({max(settings.drift, settings.machine_noise or 0.0):g}, {NOISE_MARGIN:g} × its "
        "cells' mean noise) (`bound`). `baseline` is the reference mean over its seeds, "
        "`spread` their standard deviation (points), `current` the new mean, `noise` the "
        "cell's change measured on another machine or kernel set when the baseline was made.",
        counts.rename("rows").to_frame().T.to_markdown(index=False),
    ]
    if len(drifts):
        shown = drifts.rename(columns={"mean": "mean change", "count": "cells"})
        lines.append(shown.to_markdown(index=False, floatfmt="+.2f"))
    notable = rows[rows["outcome"] != "pass"]
    if len(notable):
        shown = notable.drop(columns=["paired", "n_base", "n_new"]).astype(object)
        shown = shown.where(shown.notna(), None)
        lines.append(shown.to_markdown(index=False, floatfmt=".2f", missingval=""))
    return "\n\n".join(lines) + "\n"


def write_json(result: Result, path: Path, settings: Settings) -> None:
    """The full comparison; NaN becomes null so any JSON reader takes it."""
    payload = {
        "exit_code": result.exit_code,
        "settings": settings.__dict__,
        "drift": json.loads(result.drift.to_json(orient="records")),
        "cells": json.loads(result.rows.to_json(orient="records", force_ascii=False)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
