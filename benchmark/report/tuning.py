"""Which runs a leaderboard ranks when its suite searched hyperparameters (`search:`).

The default leaderboard ranks the defaults (trial 0) and says how many draws it left out.
The tuned one (`xdkd report --tuned`) keeps, per method and setting (pair, protocol,
teacher, student), the draw with the best mean validation score over its seeds under the
report's selection rule, which also chose each run's epoch (DomainBed, Gulrajani &
Lopez-Paz ICLR 2021: one rule for both, applied to the whole sweep). Only a draw recorded in
every seed is eligible. Target labels are read only under the flagged `oracle` rule. The
fragility table says, per method and setting, how test accuracy spreads over the draws, how
many runs failed, and how far the defaults are from the chosen draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.report.plots import searched_parameters
from benchmark.report.tidy import method_card
from benchmark.suite.selection import RULES
from benchmark.suite.specs import RunRecord, RunSpec

GROUP = ["method", "pair", "protocol", "teacher", "student"]


@dataclass
class Tuning:
    """What a report ranks and says about the search: `records` (the defaults, or each
    method's chosen draw under its method's own row), `fragility` (empty for the defaults'
    leaderboard), `caption` (which leaderboard this is, and the budget)."""

    records: list[RunRecord]
    fragility: pd.DataFrame
    caption: str
    draws: pd.DataFrame  # per method, setting and trial: mean test, chosen, values (tuned)
    # the runs the null spread is measured on: the A/A controls and the defaults' runs they
    # repeat (in the tuned leaderboard the row of the controlled method may be another draw)
    null_keys: frozenset[str]


def untrialled(spec: RunSpec) -> RunSpec:
    """The spec as its method's row names it, without the trial mark."""
    return spec.model_copy(update={"method": spec.method.model_copy(update={"trial": None})})


def _cell(spec: RunSpec) -> dict[str, Any]:
    bare = untrialled(spec)
    return {
        "method": bare.method.row,
        "pair": spec.setting.label,
        "protocol": spec.setting.protocol.label,
        "teacher": spec.teacher.name,
        "student": spec.student.name,
        "trial": spec.method.trial or 0,
        "seed": spec.seed,
    }


def searched(records: list[RunRecord]) -> bool:
    return any(r.spec.method.trial is not None for r in records)


def defaults_only(records: list[RunRecord]) -> Tuning:
    """The defaults' leaderboard: trial 0 of every method."""
    kept = [r for r in records if r.spec.method.trial is None]
    left = len(records) - len(kept)
    caption = (
        f"Defaults' leaderboard: every method at its paper defaults (trial 0); {left} runs of "
        "search draws left out (`xdkd report --tuned` ranks each method's chosen draw)."
        if left
        else ""
    )
    return Tuning(kept, pd.DataFrame(), caption, pd.DataFrame(), frozenset(r.key for r in kept))


def drawn_values(spec: RunSpec) -> dict[str, Any]:
    """The values a run trained with: every method parameter (its defaults filled in) and
    the student recipe's learning rate and weight decay (`recipe.lr`, `recipe.weight_decay`)."""
    card = method_card(spec.method.name)
    recipe = spec.student_recipe
    return {**(card.defaults if card else {}), **spec.method.params} | {
        "recipe.lr": recipe.lr,
        "recipe.weight_decay": recipe.weight_decay,
    }


def draws_table(
    records: list[RunRecord], errors: list[dict[str, Any]], selection: str, test: pd.Series
) -> pd.DataFrame:
    """One row per run of the search (trial 0 included): its cell, trial, seed, validation
    score under `selection`, test accuracy (`test`, by key) and whether it failed."""
    rule = RULES[selection]
    rows = [
        _cell(r.spec)
        | {
            "key": r.key,
            "score": rule.score(r.curves),
            "test": test.get(r.key, math.nan),
            "failed": False,
            "values": drawn_values(r.spec),
        }
        for r in records
        if r.spec.method.stream is None
    ]
    for error in errors:
        try:
            spec = RunSpec.model_validate(error.get("spec"))
        except ValueError:
            continue
        if spec.method.stream is None:
            rows.append(
                _cell(spec)
                | {"key": error.get("key"), "score": math.nan, "test": math.nan, "failed": True}
                | {"values": drawn_values(spec)}
            )
    return pd.DataFrame(rows)


def choose(draws: pd.DataFrame, selection: str) -> pd.DataFrame:
    """Per method and setting, each trial's mean score and test accuracy over seeds, whether
    it is complete (every seed recorded) and which one is chosen (the best mean score among
    the complete; ties and no score: the lowest trial, so the defaults win a tie)."""
    seeds = draws.groupby(GROUP)["seed"].nunique().rename("seeds")
    per_trial = (
        draws.groupby([*GROUP, "trial"])
        .agg(
            score=("score", "mean"),
            test=("test", "mean"),
            recorded=("failed", lambda f: int((~f).sum())),
            failed=("failed", "sum"),
        )
        .reset_index()
        .join(seeds, on=GROUP)
    )
    per_trial["complete"] = (per_trial["recorded"] == per_trial["seeds"]) & (
        per_trial["failed"] == 0
    )
    sign = -1 if RULES[selection].best == "min" else 1
    ranked = per_trial["score"].where(per_trial["complete"]) * sign
    per_trial["rank_score"] = ranked.fillna(-np.inf)
    chosen = (
        per_trial.sort_values([*GROUP, "rank_score", "trial"], ascending=[True] * 5 + [False, True])
        .groupby(GROUP)
        .head(1)
    )
    per_trial["chosen"] = per_trial.index.isin(chosen.index)
    return per_trial.drop(columns="rank_score")


def tuned(
    records: list[RunRecord], errors: list[dict[str, Any]], selection: str, test: pd.Series
) -> Tuning:
    """The tuned leaderboard's runs (each method's chosen draw, under its own row) and the
    fragility table. `test`: each run's target accuracy under the selection rule, by key."""
    draws = draws_table(records, errors, selection, test)
    per_trial = choose(draws, selection)
    chosen = per_trial[per_trial["chosen"]].set_index(GROUP)["trial"]
    keep = {
        key
        for key, trial, *cell in draws[["key", "trial", *GROUP]].itertuples(index=False)
        if chosen.get(tuple(cell)) == trial
    }
    kept = [
        record.model_copy(update={"spec": untrialled(record.spec)})
        for record in records
        if record.key in keep or record.spec.method.stream is not None
    ]
    trials = int(draws["trial"].max()) if len(draws) else 0
    caption = (
        f"Tuned leaderboard: per method and setting, the one of {trials + 1} draws (the "
        f"defaults and {trials} random draws of its search space, each over every seed) with "
        f"the best mean validation score under the selection rule below ({selection}), then "
        "its test numbers; a draw with a failed or missing seed is not eligible."
    )
    values = draws.drop_duplicates([*GROUP, "trial"]).set_index([*GROUP, "trial"])["values"]
    per_trial = per_trial.join(values, on=[*GROUP, "trial"])
    defaults = defaults_only(records).null_keys
    return Tuning(kept, fragility(per_trial), caption, per_trial, defaults)


def fragility(per_trial: pd.DataFrame) -> pd.DataFrame:
    """Per method and setting: test accuracy (%) over the draws (median, interquartile
    range), the share of runs that failed, the defaults', the chosen draw's and the best
    draw's test accuracy (the best by test labels: described, never used), and the chosen
    draw's values where they are not the defaults."""
    rows = []
    for cell, group in per_trial.groupby(GROUP):
        if len(group) < 2:  # nothing was searched (the teacher row)
            continue
        test = group["test"].dropna() * 100
        defaults = group.loc[group["trial"] == 0, "test"].mul(100)
        default_test = defaults.iloc[0] if len(defaults) else math.nan
        chosen = group[group["chosen"]].iloc[0]
        trial = int(chosen["trial"])
        runs = group["recorded"].sum() + group["failed"].sum()
        varied = searched_parameters(group["values"].dropna())
        rows.append(
            dict(zip(GROUP, cell, strict=True))
            | {
                "draws": len(group),
                "failed_share": 100 * group["failed"].sum() / max(1, runs),
                "median": test.median(),
                "iqr": test.quantile(0.75) - test.quantile(0.25),
                "defaults": default_test,
                "chosen_trial": trial,
                "chosen": 100 * chosen["test"],
                "chosen_minus_defaults": 100 * chosen["test"] - default_test,
                "best_by_test": test.max(),
                "chosen_values": "defaults"
                if trial == 0
                else values_text(chosen["values"], varied),
            }
        )
    return pd.DataFrame(rows)


def values_text(values: dict[str, Any], names: list[str]) -> str:
    """`recipe.lr=0.0031, temperature=2.4`: the values of `names` (the searched ones)."""
    shown = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ", ".join(f"{name}={shown(values[name])}" for name in sorted(names))
