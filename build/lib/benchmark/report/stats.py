"""Statistics over seeds: mean, standard error and t-interval, paired method comparisons,
the correction across a report's comparisons, the minimal detectable effect and the null
spread that A/A controls measure.

A benchmark number without its spread invites reading noise as progress; every aggregate here
carries n, and every comparison names the test it used. A comparison *holds* only when it
survives Holm's correction over every comparison of its report, its 95% interval excludes
zero and its effect is larger than the null spread (Bouthillier et al., MLSys 2021: data
order and initialisation alone flip many published comparisons); "the same sign in every
seed" is no rule, since a no-effect comparison passes it one time in four at 3 seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE  # the family-wise error rate Holm's correction keeps
POWER = 0.8  # the minimal detectable effect is the one found this often
TIE_POINTS = 0.5  # differences under half a point are ties
WILCOXON_MIN_N = 6  # below this the signed-rank test cannot reach p < 0.05; a t-test is used
PAIRING = ["pair", "teacher", "student", "protocol", "seed"]


def _spread(grouped: pd.core.groupby.SeriesGroupBy) -> pd.DataFrame:
    """n, mean, standard error and the t-distribution 95% interval of each group."""
    out = grouped.agg(["count", "mean", "std"]).rename(columns={"count": "n"})
    out["se"] = out["std"] / np.sqrt(out["n"])
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, out["n"] - 1) * out["se"]
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out.drop(columns="std")


def summarise(table: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Long table: one row per (group, metric) with n, mean, se, ci_low, ci_high over seeds.
    NaN values (a metric a record lacks) do not count in n."""
    long = table.melt(id_vars=[*by, "seed"], value_vars=metrics, var_name="metric")
    long = long.dropna(subset=["value"])
    return _spread(long.groupby([*by, "metric"], sort=False)["value"]).reset_index()


def complete_seeds(table: pd.DataFrame, rows: list[str], metric: str) -> pd.Series:
    """Per (row, seed): each seed's mean over everything else in the row (pairs, or teachers
    when the rows leave them out), kept only for the seeds that have every cell the row has
    in any seed: a seed missing a pair (a failed run) would otherwise be averaged over an
    easier or harder set of pairs than the others, and still count in n."""
    known = table.dropna(subset=[metric])
    within = [c for c in ("pair", "teacher", "student", "protocol", "grid") if c not in rows]
    within = [c for c in within if c in known]
    if not within:
        return known.groupby([*rows, "seed"])[metric].mean()
    cell = known.groupby(within, sort=False, dropna=False).ngroup()
    per_seed = known.assign(_cell=cell).groupby([*rows, "seed"])
    means, cells = per_seed[metric].mean(), per_seed["_cell"].nunique()
    wanted = known.assign(_cell=cell).groupby(rows)["_cell"].nunique()
    wanted = wanted.reindex(cells.index.droplevel("seed")).to_numpy()
    return means[cells.to_numpy() == wanted]


def seed_spread(table: pd.DataFrame, rows: list[str], metric: str) -> pd.DataFrame:
    """Per row: n, mean, se over its complete seeds (`complete_seeds`; DomainBed's
    averaging: first over the row's cells within a seed, then over seeds)."""
    return _spread(complete_seeds(table, rows, metric).groupby(level=rows))


def minimal_detectable_effect(sd: float, n: int) -> float:
    """The smallest true mean difference a two-sided paired t-test at ALPHA finds with
    probability POWER, given n cells and the differences' standard deviation: (t_{1-a/2} +
    t_{power}) sd / sqrt(n) with n - 1 degrees of freedom. NaN under 2 cells."""
    if n < 2 or not np.isfinite(sd):
        return math.nan
    quantiles = stats.t.ppf(1 - ALPHA / 2, n - 1) + stats.t.ppf(POWER, n - 1)
    return float(quantiles * sd / math.sqrt(n))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), which keep the family-wise error rate
    over all of them; NaN (no test) stays NaN and does not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def null_spread(diffs: np.ndarray) -> float:
    """The null spread in points: the root mean square of A/A differences (two runs of one
    method and spec that differ only in the data-order stream), i.e. their standard
    deviation about the null's known mean of zero. NaN without one."""
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[~np.isnan(diffs)]
    return float(np.sqrt(np.mean(diffs**2))) if len(diffs) else math.nan


def aa_differences(table: pd.DataFrame, metric: str = "target_acc") -> pd.Series:
    """Per cell (pair, teacher, student, protocol, seed, grid) of an A/A control: the
    control's `metric` minus its original's, in points."""
    pairing = [*PAIRING, "grid", "method_name"]
    controls = table[table["control"]].set_index(pairing)[metric]
    originals = table[~table["control"]].set_index(pairing)[metric]
    both = controls.to_frame("control").join(originals.rename("original"), how="inner")
    return (100 * (both["control"] - both["original"])).dropna()


@dataclass(frozen=True)
class NullSpread:
    """What a report's A/A controls measured: the spread in points, from how many A/A
    differences, of which methods."""

    points: float
    n: int
    methods: tuple[str, ...]

    @property
    def caption(self) -> str:
        if not self.n:
            return (
                "Null spread: not measured (the runs hold no A/A control; a suite's "
                "`controls: [aa]` adds one), so no comparison is held against it."
            )
        return (
            f"Null spread: {self.points:.1f} points (root mean square of {self.n} A/A "
            f"differences: {', '.join(self.methods)} run again with another data-order "
            "stream, labelled (A/A), never ranked); an effect inside it is reported as such."
        )


def measure_null(table: pd.DataFrame, metric: str = "target_acc") -> NullSpread:
    """The null spread of a report's runs (`aa_differences`, `null_spread`)."""
    if "control" not in table or not table["control"].any():
        return NullSpread(math.nan, 0, ())
    diffs = aa_differences(table, metric)
    methods = tuple(sorted(set(diffs.index.get_level_values("method_name"))))
    return NullSpread(null_spread(diffs.to_numpy()), len(diffs), methods)


def judge(comparison: pd.DataFrame, null: float) -> pd.DataFrame:
    """The claim rule over a report's comparisons: `p (Holm)` corrects every row's p over
    all rows (each row one test), `beyond null` is |mean diff| above the null spread (NaN
    where no A/A control measured it), and a comparison `holds` when its corrected p is
    under ALPHA, its 95% interval excludes zero and it is beyond the null spread (or the
    spread was not measured)."""
    judged = comparison.copy()
    judged["p (Holm)"] = holm(judged["p"])
    excludes_zero = (judged["ci_low"] > 0) | (judged["ci_high"] < 0)
    measured = bool(np.isfinite(null))
    beyond = judged["mean diff"].abs() > null
    judged["beyond null"] = beyond.astype("boolean") if measured else pd.NA
    judged["holds"] = (judged["p (Holm)"] < ALPHA) & excludes_zero & (beyond | (not measured))
    return judged


def widest_halfwidth(
    comparison: pd.DataFrame, method: str | None = None, against: str | None = None
) -> float:
    """Half the width of the widest 95% interval among a report's comparisons of `method`
    (a row's method name, a grid cell's label aside) against `against` (None: every one);
    NaN when one of them has no interval yet (under 2 cells) or none is there."""
    if comparison.empty:
        return math.nan
    rows = comparison
    if method is not None:
        rows = rows[rows["method"].str.partition(" [")[0] == method]
    if against is not None:
        rows = rows[rows["against"] == against]
    widths = (rows["ci_high"] - rows["ci_low"]) / 2
    return math.nan if widths.empty or widths.isna().any() else float(widths.max())


def paired_test(diffs: np.ndarray) -> tuple[str, float]:
    """(test name, two-sided p): Wilcoxon signed-rank from WILCOXON_MIN_N pairs, a paired
    t-test below that, none under 2 pairs or when every difference is equal."""
    if len(diffs) < 2 or not np.any(diffs):
        return "none", math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if len(diffs) >= WILCOXON_MIN_N:
            return "Wilcoxon signed-rank", float(stats.wilcoxon(diffs).pvalue)
        return "paired t-test", float(stats.ttest_1samp(diffs, 0.0).pvalue)


SPLITS = [c for c in PAIRING if c != "seed"]  # what a comparison can be split by


def paired_comparison(
    table: pd.DataFrame,
    reference: str,
    metric: str = "target_acc",
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Every ranked method against `reference`, cell by cell (pair, teacher, student,
    protocol, seed, and a grid's cell: `kd [augment=mixup]` against `source_only
    [augment=mixup]`), in points: mean difference, its spread, win/tie/loss and a test.
    Pooled over the cells' pairs, teachers, students and protocols, or one comparison per
    value of the `by` columns (a subset of SPLITS): per pair, a paper's per-dataset test."""
    pairing = [*PAIRING, "grid"]
    is_reference = (table["method_name"] == reference) & ~table["external"]
    base = table[is_reference].groupby(pairing)[metric].mean().rename("base")
    others = table[~is_reference & ~table["reference"]]
    cells = others.groupby(["method", *pairing], sort=False)[metric].mean().reset_index()
    cells = cells.join(base, on=pairing, how="inner")
    # rounded so that equal differences tie in the signed-rank test despite float noise
    cells["diff"] = (100 * (cells[metric] - cells["base"])).round(6)
    grouped = cells.dropna(subset=["diff"]).groupby([*by, "method"], sort=False)["diff"]
    result = _spread(grouped)
    sd = grouped.std()
    result["mde"] = [minimal_detectable_effect(s, n) for s, n in zip(sd, result["n"], strict=True)]
    result["W/T/L"] = [
        f"{(d >= TIE_POINTS).sum()}/{(d.abs() < TIE_POINTS).sum()}/{(d <= -TIE_POINTS).sum()}"
        for _, d in grouped
    ]
    tests = [paired_test(d.to_numpy()) for _, d in grouped]
    result["test"], result["p"] = [t for t, _ in tests], [p for _, p in tests]
    result = result.rename(columns={"mean": "mean diff"}).reset_index()
    order = [*by, "mean diff"]
    return result.sort_values(order, ascending=[*(True for _ in by), False], ignore_index=True)


def change_and_se(base: dict[str, float], new: dict[str, float]) -> tuple[float, float, bool]:
    """(mean change, its SE, paired?) from per-seed values already signed and scaled. A
    side with one seed contributes no variance; two single seeds give SE 0."""
    if set(base) == set(new) and len(base) > 1:
        diffs = np.array([new[s] - base[s] for s in base])
        return float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(len(diffs))), True
    a, b = np.array(list(base.values())), np.array(list(new.values()))
    var = sum(x.var(ddof=1) / len(x) for x in (a, b) if len(x) > 1)
    return float(b.mean() - a.mean()), math.sqrt(var), False


def logit(p: np.ndarray | pd.Series) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def logit_fit(table: pd.DataFrame) -> tuple[float, float] | None:
    """Slope and intercept of logit(mCA) against logit(clean accuracy) over the baseline
    family's runs (Taori et al. 2020); None without two baseline runs that differ."""
    if "mca" not in table:
        return None
    base = table[table["family"] == "baseline"].dropna(subset=["clean_subset_acc", "mca"])
    if base["clean_subset_acc"].nunique() < 2:
        return None
    slope, intercept = np.polyfit(logit(base["clean_subset_acc"]), logit(base["mca"]), 1)
    return float(slope), float(intercept)


def effective_robustness(table: pd.DataFrame) -> pd.Series:
    """Per run: mCA minus the baseline fit's prediction at its clean accuracy (a fraction,
    like the accuracies); NaN where there is no fit or no mCA."""
    fit = logit_fit(table)
    if fit is None:
        return pd.Series(np.nan, index=table.index)
    predicted = 1 / (1 + np.exp(-(fit[0] * logit(table["clean_subset_acc"]) + fit[1])))
    return table["mca"] - predicted


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # the same records give the same shares


def rank_uncertainty(
    table: pd.DataFrame,
    rows: list[str],
    metric: str = "target_acc",
    resamples: int = BOOTSTRAP_RESAMPLES,
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Per ranked row, how sure its rank is: over bootstrap resamples of the seeds, the share
    in which it ranks first, its mean rank and the 95% interval of its rank. A resample draws
    each pair's seeds with replacement, one draw for every row (the rows of a seed share its
    batches, so the comparison stays paired); a row's score is then the leaderboard's mean,
    over pairs of the mean over the drawn seeds. Rows under different protocols rank apart,
    as on the leaderboard, and apart per value of the `by` columns (e.g. per pair); rows that
    miss a (pair, seed) cell another row has are left out. Ties share first place: each tied
    row counts it."""
    ranked = table[~table["reference"]].dropna(subset=[metric])
    apart = [*(["protocol"] if "protocol" in rows else []), *(c for c in by if c not in rows)]
    groups = ranked.groupby(apart) if apart else [((), ranked)]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    out = []
    for key, group in groups:
        cells = group.pivot_table(index=rows, columns=["pair", "seed"], values=metric)
        cells = cells.dropna()
        if cells.empty:
            continue
        score = np.zeros((len(cells), resamples))
        pairs = cells.columns.get_level_values("pair").unique()
        for pair in pairs:
            values = cells.xs(pair, axis=1, level="pair").to_numpy()
            draws = rng.integers(0, values.shape[1], size=(resamples, values.shape[1]))
            score += values[:, draws].mean(axis=2) / len(pairs)
        rank = stats.rankdata(-score, method="min", axis=0)
        low, high = np.percentile(rank, [2.5, 97.5], axis=1)
        frame = cells.index.to_frame(index=False)
        split = [(c, v) for c, v in zip(apart, key, strict=True) if c not in frame]
        for position, (column, value) in enumerate(split):
            frame.insert(position, column, value)
        frame["P(first)"] = (rank == 1).mean(axis=1)
        frame["mean rank"] = rank.mean(axis=1)
        frame["rank low"], frame["rank high"] = low, high
        frame["seeds"] = cells.columns.get_level_values("seed").nunique()
        out.append(frame.sort_values("mean rank", kind="stable"))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
