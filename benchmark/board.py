"""The leaderboard: rows (method, protocol, teacher, student), a column per pair and summaries,
mean ± standard error over seeds, ranked, with its selection rule and references in the caption.

Built once as aligned frames (`Board`), so every output format shows the same numbers and the
same marks; `benchmark.render` only turns a Board into text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from benchmark.config import PROTOCOLS
from benchmark.errors import XdkdError
from benchmark.stats import seed_spread
from benchmark.tidy import ROBUSTNESS_REFERENCE, SELECTION_RULES

DEFAULT_ROWS = ["method", "protocol", "teacher", "student"]
RANK_BY = "mean"


@dataclass(frozen=True)
class Column:
    """A leaderboard column: which metric, restricted to which pair, shown in which unit."""

    label: str
    metric: str
    pair: str | None = None
    scale: float = 100.0
    better: str | None = "max"  # "max", "min", or None for a property that is not a score


def columns(pairs: list[str]) -> list[Column]:
    return [
        *(Column(pair, "target_acc", pair) for pair in pairs),
        Column("mean", "target_acc"),
        Column("held-out", "heldout_mean_acc"),
        Column("mCA", "mca"),
        Column("rel. mCE", "relative_mce", scale=1.0, better="min"),
        Column("ECE", "target_ece", better="min"),
        Column("params (M)", "params", scale=1e-6, better=None),
    ]


@dataclass
class Board:
    """The leaderboard as aligned frames (index: the row keys, columns: column labels), so
    each format renders the same numbers and marks."""

    mean: pd.DataFrame
    se: pd.DataFrame
    seeds: pd.Series
    reference: pd.Series
    rank: pd.Series
    best: pd.DataFrame
    below_floor: pd.DataFrame
    columns: list[Column]
    caption: str
    notes: list[str] = field(default_factory=list)

    def flat(self) -> pd.DataFrame:
        """One numeric frame for CSV: means, `... se` columns, rank, reference, seeds."""
        se = self.se.add_suffix(" se")
        ordered = [c for pair in zip(self.mean.columns, se.columns, strict=True) for c in pair]
        flat = pd.concat([self.mean, se], axis=1)[ordered]
        flat.insert(0, "rank", self.rank)
        flat["reference"], flat["seeds"] = self.reference, self.seeds
        return flat.reset_index()


def _column_values(table: pd.DataFrame, rows: list[str], column: Column) -> pd.DataFrame:
    subset = table if column.pair is None else table[table["pair"] == column.pair]
    spread = seed_spread(subset, rows, column.metric) if column.metric in table else None
    if spread is None or spread.empty:
        return pd.DataFrame(columns=["mean", "se"], dtype=float)
    return spread[["mean", "se"]] * column.scale


def _best(mean: pd.DataFrame, ranked: pd.Series, cols: list[Column]) -> pd.DataFrame:
    """Cells equal, at the shown precision, to the column's best among ranked rows."""
    best = pd.DataFrame(False, index=mean.index, columns=mean.columns)
    for column in cols:
        if column.better is None or column.label not in mean:
            continue
        shown = mean.loc[ranked, column.label].round(1)
        if shown.notna().any():
            target = shown.max() if column.better == "max" else shown.min()
            best.loc[ranked, column.label] = shown == target
    return best


def leaderboard(
    table: pd.DataFrame, rows: list[str] | None = None, selection: str = "last"
) -> Board:
    """Aggregate the tidy table (see `benchmark.tidy.records_table`) into a Board."""
    rows = rows or DEFAULT_ROWS
    unknown = [r for r in rows if r not in table.columns]
    if unknown:
        raise XdkdError(f"--rows: unknown column '{unknown[0]}'; e.g. method,protocol,student")
    if {"pair", "seed"} & set(rows):
        raise XdkdError("--rows cannot hold pair or seed: pairs are columns, seeds are averaged")
    pairs = sorted(set(table["pair"]))
    cols = columns(pairs)
    mean, se = {}, {}
    for column in cols:
        values = _column_values(table, rows, column)
        mean[column.label], se[column.label] = values["mean"], values["se"]
    mean, se = pd.DataFrame(mean).rename_axis(rows), pd.DataFrame(se).rename_axis(rows)
    complete = table.groupby(rows)["pair"].nunique() == len(pairs)
    mean[RANK_BY] = mean[RANK_BY].where(complete)
    se[RANK_BY] = se[RANK_BY].where(complete)
    empty = [c.label for c in cols if c.pair is None and mean[c.label].isna().all()]
    cols = [c for c in cols if c.label not in empty]
    mean, se = mean.drop(columns=empty), se.drop(columns=empty)
    reference = table.groupby(rows)["reference"].all().reindex(mean.index)
    ranked = mean[RANK_BY].where(~reference)
    order = pd.DataFrame({"ref": ~reference})
    if "protocol" in rows:  # rows under different protocols saw different data: rank apart
        rank = ranked.groupby(level="protocol").rank(ascending=False, method="min")
        protocol = mean.index.get_level_values("protocol")
        order["protocol_order"] = [PROTOCOLS.index(p) if p in PROTOCOLS else 9 for p in protocol]
    else:
        rank = ranked.rank(ascending=False, method="min")
    order["rank"] = rank
    order = order.sort_values(list(order.columns))
    mean, se = mean.loc[order.index], se.loc[order.index]
    floor = table.groupby([*rows, "pair"])["teacher_below_floor"].any().unstack("pair")
    below_floor = floor.reindex(index=mean.index, columns=mean.columns).eq(True)
    return Board(
        mean=mean,
        se=se,
        seeds=table.groupby(rows)["seed"].nunique().reindex(mean.index),
        reference=reference.loc[mean.index],
        rank=rank.loc[mean.index],
        best=_best(mean, ~reference.loc[mean.index], cols),
        below_floor=below_floor,
        columns=cols,
        caption=caption(table, pairs, [c.label for c in cols], selection),
        notes=[f"column(s) {', '.join(empty)} left out: no record has them"] if empty else [],
    )


def caption(table: pd.DataFrame, pairs: list[str], shown: list[str], selection: str) -> str:
    """Names what the numbers are: metric, spread, selection rule, protocols, references."""
    seeds = table.groupby(["method", "pair", "teacher", "student", "protocol"])["seed"].nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    n += ": one seed, no standard error" if seeds.max() == 1 else ""
    parts = [
        f"Target-domain top-1 accuracy (%) per pair, mean ± standard error over seeds "
        f"(n = {n}). Model selection: {SELECTION_RULES[selection]}."
        f" Protocol: {', '.join(sorted(set(table['protocol'])))}.",
        f"mean: over the {len(pairs)} pair{'s' * (len(pairs) > 1)} (– where a row misses "
        "one); rank by it, within each protocol.",
        "held-out: accuracy on the family's domains that are neither source nor target.",
    ]
    if "mCA" in shown:
        parts.append(
            "mCA: mean accuracy over the corrupted target test set, every severity of the "
            "suite's ImageNet-C corruptions (all 15 unless the suite names fewer)."
        )
    if "rel. mCE" in shown:
        parts.append(
            f"rel. mCE: relative mean corruption error (%) against the in-suite reference "
            f"{ROBUSTNESS_REFERENCE} with the same student on the same pair and seed "
            "(100 = as robust; empty where that run is absent; a corruption where the "
            "reference loses under 5 points over its severities is left out of it)."
        )
    if selection != "last" and {"mCA", "rel. mCE"} & set(shown):
        parts.append("Corruption metrics are the last-epoch model's.")
    if "ECE" in shown:
        parts.append("ECE: expected calibration error (%, 15 bins).")
    parts.append("params: millions.")
    references = sorted(set(table.loc[table["reference"], "method"]))
    if references:
        parts.append(f"Reference rows ({', '.join(references)}) are shown, not ranked.")
    parts.append("Best in bold.")
    if table["teacher_below_floor"].any():
        parts.append("† teacher under its source-accuracy floor: results from it are suspect.")
    return " ".join(parts)


def floor_warnings(table: pd.DataFrame) -> list[str]:
    """One line per teacher and source under its floor: every student distilled from it is
    suspect."""
    low = table[table["teacher_below_floor"]].drop_duplicates(["teacher", "source", "seed"])
    return [
        f"teacher {teacher} on {source} reached {100 * group['teacher_source_acc'].min():.1f}"
        f"% on its own test split (seeds {', '.join(map(str, sorted(group['seed'])))}), under "
        f"the floor {100 * group['teacher_floor'].iloc[0]:.0f}%: results distilled from it "
        "are not meaningful"
        for (teacher, source), group in low.groupby(["teacher", "source"])
    ]
