"""The leaderboard: rows (method, protocol, teacher, student), a column per pair and summaries,
mean ± standard error over seeds, ranked, with its selection rule and references in the caption.

Built once as aligned frames (`Board`), so every output format shows the same numbers and the
same marks; `benchmark.report.render` only turns a Board into text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from benchmark.errors import XdkdError
from benchmark.report.stats import NullSpread, complete_seeds, seed_spread
from benchmark.report.tidy import ROBUSTNESS_REFERENCE
from benchmark.suite.metrics import CHANCE_POINTS, metric
from benchmark.suite.protocols import PROTOCOL_NAMES
from benchmark.suite.selection import RULES, UNDER_TRAINED_POINTS

DEFAULT_ROWS = ["method", "protocol", "teacher", "student"]
RANK_BY = "mean"


@dataclass(frozen=True)
class Column:
    """A leaderboard column: which metric, restricted to which pair; its unit and direction
    come from the metrics registry."""

    label: str
    metric: str
    pair: str | None = None

    @property
    def scale(self) -> float:
        return metric(self.metric).scale

    @property
    def better(self) -> str | None:
        return metric(self.metric).better


SUMMARY_COLUMNS = ("heldout_mean_acc", "mca", "relative_mce", "target_ece", "params")


def columns(table: pd.DataFrame, pairs: list[str]) -> list[Column]:
    """A column per pair (per target or task where a pair's runs have several), the mean,
    then the summaries."""
    out = []
    for pair in pairs:
        rows = table[table["pair"] == pair]
        items = sorted(
            c.partition("/")[2]
            for c in rows.columns
            if c.startswith("target_acc/") and rows[c].notna().any()
        )
        if items:
            out += [Column(f"{pair}: {item}", f"target_acc/{item}", pair) for item in items]
        else:
            out.append(Column(pair, "target_acc", pair))
    out.append(Column("mean", "target_acc"))
    return out + [Column(metric(name).label, name) for name in SUMMARY_COLUMNS]


@dataclass
class Board:
    """The leaderboard as aligned frames (index: the row keys, columns: column labels), so
    each format renders the same numbers and marks."""

    mean: pd.DataFrame
    se: pd.DataFrame
    low: pd.DataFrame  # the 95% t-interval over seeds of each mean
    high: pd.DataFrame
    seeds: pd.Series
    reference: pd.Series
    rank: pd.Series
    best: pd.DataFrame
    below_floor: pd.DataFrame
    under_trained: pd.DataFrame  # a run of the cell was still rising on source validation
    at_chance: pd.DataFrame  # a run of the cell ended at chance (`tidy.at_chance`)
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
        return pd.DataFrame(columns=["mean", "se", "ci_low", "ci_high"], dtype=float)
    return spread[["mean", "se", "ci_low", "ci_high"]] * column.scale


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


def _complete(table: pd.DataFrame, rows: list[str]) -> pd.Series:
    """Rows that have every pair their protocol has in the table (every pair, when rows do
    not keep protocols apart): only those get a mean and a rank."""
    counts = table.groupby(rows)["pair"].nunique()
    if "protocol" not in rows:
        return counts == table["pair"].nunique()
    per_protocol = table.groupby("protocol")["pair"].nunique()
    wanted = per_protocol.reindex(counts.index.get_level_values("protocol")).to_numpy()
    return counts == wanted


def _pair_flags(
    table: pd.DataFrame, rows: list[str], flag: str, mean: pd.DataFrame, cols: list[Column]
) -> pd.DataFrame:
    """Per row and pair column: whether any run of the cell has `flag`."""
    per_pair = table.groupby([*rows, "pair"])[flag].any().unstack("pair")
    flags = pd.DataFrame(False, index=mean.index, columns=mean.columns)
    for column in cols:
        if column.pair is not None and column.pair in per_pair:
            flags[column.label] = per_pair[column.pair].reindex(mean.index).eq(True)
    return flags


def protocol_order(label: str) -> int:
    name = label.partition("(")[0]
    return PROTOCOL_NAMES.index(name) if name in PROTOCOL_NAMES else len(PROTOCOL_NAMES)


def leaderboard(
    table: pd.DataFrame,
    rows: list[str] | None = None,
    selection: str = "source-val",
    null: NullSpread | None = None,
) -> Board:
    """Aggregate the tidy table (see `benchmark.report.tidy.records_table`, without its A/A
    controls) into a Board; `null` is what the controls measured, for the caption."""
    rows = rows or DEFAULT_ROWS
    unknown = [r for r in rows if r not in table.columns]
    if unknown:
        raise XdkdError(f"--rows: unknown column '{unknown[0]}'; e.g. method,protocol,student")
    if {"pair", "seed"} & set(rows):
        raise XdkdError(
            "--rows cannot hold pair or seed: pairs are columns, seeds are averaged; "
            "--by pair splits the paired comparison and the ranks per pair"
        )
    pairs = sorted(set(table["pair"]))
    cols = columns(table, pairs)
    mean, se, low, high = {}, {}, {}, {}
    for column in cols:
        values = _column_values(table, rows, column)
        mean[column.label], se[column.label] = values["mean"], values["se"]
        low[column.label], high[column.label] = values["ci_low"], values["ci_high"]
    mean, se = pd.DataFrame(mean).rename_axis(rows), pd.DataFrame(se).rename_axis(rows)
    complete = _complete(table, rows).reindex(mean.index).fillna(False).astype(bool)
    mean[RANK_BY] = mean[RANK_BY].where(complete)
    se[RANK_BY] = se[RANK_BY].where(complete)
    empty = [
        c.label
        for c in cols
        if c.pair is None and c.label != RANK_BY and mean[c.label].isna().all()
    ]
    cols = [c for c in cols if c.label not in empty]
    mean, se = mean.drop(columns=empty), se.drop(columns=empty)
    reference = table.groupby(rows)["reference"].all().reindex(mean.index)
    ranked = mean[RANK_BY].where(~reference)
    order = pd.DataFrame({"ref": ~reference})
    if "protocol" in rows:  # rows under different protocols saw different data: rank apart
        rank = ranked.groupby(level="protocol").rank(ascending=False, method="min")
        protocol = mean.index.get_level_values("protocol")
        order["protocol_order"] = [protocol_order(p) for p in protocol]
        order["protocol_label"] = list(protocol)  # few_shot(shots=1) before few_shot(shots=5)
    else:
        rank = ranked.rank(ascending=False, method="min")
    order["rank"] = rank
    order = order.sort_values(list(order.columns))
    mean, se = mean.loc[order.index], se.loc[order.index]
    below_floor = _pair_flags(table, rows, "teacher_below_floor", mean, cols)
    short = _pair_flags(table, rows, "under_trained", mean, cols)
    chance = _pair_flags(table, rows, "at_chance", mean, cols)
    oracle = RULES[selection].oracle  # target labels chose the epochs: shown, never ranked
    ranked_rows = ~reference.loc[mean.index] & (not oracle)
    return Board(
        mean=mean,
        se=se,
        low=pd.DataFrame(low).reindex(index=mean.index, columns=mean.columns),
        high=pd.DataFrame(high).reindex(index=mean.index, columns=mean.columns),
        seeds=complete_seeds(table, rows, "target_acc")
        .groupby(level=rows)
        .size()
        .reindex(mean.index),
        reference=reference.loc[mean.index],
        rank=rank.loc[mean.index] * (float("nan") if oracle else 1),
        best=_best(mean, ranked_rows, cols),
        below_floor=below_floor,
        under_trained=short,
        at_chance=chance,
        columns=cols,
        caption=caption(table, pairs, [c.label for c in cols], selection, null),
        notes=[f"column(s) {', '.join(empty)} left out: no record has them"] if empty else [],
    )


def caption(
    table: pd.DataFrame,
    pairs: list[str],
    shown: list[str],
    selection: str,
    null: NullSpread | None = None,
) -> str:
    """Names what the numbers are: metric, spread, selection rule, protocols, references,
    the null spread."""
    seeds = table.groupby(["method", "pair", "teacher", "student", "protocol"])["seed"].nunique()
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    n += ": one seed, no standard error" if seeds.max() == 1 else ""
    rule = RULES[selection]
    parts = [
        f"Target-domain top-1 accuracy (%) per pair (per target or task where a pair has "
        f"several), mean ± standard error over seeds (n = {n}). Model selection: "
        f"{rule.caption}. Protocol: {', '.join(sorted(set(table['protocol'])))}.",
        f"mean: over the {len(pairs)} pair{'s' * (len(pairs) > 1)} (– where a row misses "
        "one), over the seeds that have every pair of the row (a seed missing one does not "
        "count in its n); rank by it, within each protocol.",
        "held-out: accuracy on the family's domains that are neither source nor target.",
    ]
    parts += [null.caption] if null is not None else []
    if "mCA" in shown:
        parts.append(
            "mCA: mean accuracy over the corrupted robustness set (a seeded class-stratified "
            "sample of the target test split), every severity of the suite's ImageNet-C "
            "corruptions (all 15 unless the suite names fewer)."
        )
    if "rel. mCE" in shown:
        parts.append(
            f"rel. mCE: relative mean corruption error (%) against the in-suite reference "
            f"{ROBUSTNESS_REFERENCE} with the same student on the same pair and seed "
            "(100 = as robust; empty where that run is absent; a corruption where the "
            "reference loses under 5 points over its severities is left out of it)."
        )
    if selection != "last" and "data_free" in set(table["protocol"].str.partition("(")[0]):
        parts.append("data_free rows: the last epoch (no real image may choose it).")
    if selection != "last" and {"mCA", "rel. mCE"} & set(shown):
        parts.append("Corruption metrics and cost are the last-epoch model's.")
    if "ECE" in shown:
        parts.append("ECE: expected calibration error (%, 15 bins).")
    parts.append("params: millions.")
    references = sorted(set(table.loc[table["reference"] & ~table["external"], "method"]))
    if references:
        parts.append(f"Reference rows ({', '.join(references)}) are shown, not ranked.")
    externals = sorted(set(table.loc[table["external"], "method"]))
    if externals:
        parts.append(
            f"External rows ({', '.join(externals)}): checkpoints trained outside the suite "
            "(xdkd evaluate-model), evaluated under its protocol; shown, not ranked."
        )
    if RULES[selection].oracle:
        parts.append("Not ranked: the epochs were chosen with target labels.")
    else:
        parts.append("Best in bold.")
    if table["teacher_below_floor"].any():
        parts.append("† teacher under its source-accuracy floor: results from it are suspect.")
    parts.append(
        "Failure, one rule for every method: a run whose loss became NaN, or rose while it "
        "ended at chance on source validation, failed (listed under the table, not counted); "
        "a finished run whose target, source or source-validation accuracy ends at chance "
        f"(under 1 / classes + {100 * CHANCE_POINTS:g} points) is counted as measured and marked ○."
    )
    if table["last_epoch_fallback"].any():
        fallback = sorted(set(table.loc[table["last_epoch_fallback"], "method"]))
        parts.append(
            f"{', '.join(fallback)}: the last epoch where a run's source-validation accuracy "
            "was at chance at every epoch (no signal to select by)."
        )
    if table["under_trained"].any():
        parts.append(
            f"‡ under-trained: a run of the cell gained more than {UNDER_TRAINED_POINTS} points "
            "of source-validation accuracy over its last fifth of training, so its budget is "
            "short of convergence."
        )
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
