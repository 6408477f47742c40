"""Report figures (PNG for the page, PDF for papers): severity curves, a Pareto view of
accuracy against size, a pair x method heatmap, and clean vs corrupted accuracy with the
effective-robustness fit.

A figure the records cannot support (no robustness yet, a single pair) is skipped with a
one-line note; a report is never lost to a missing plot. Figures use matplotlib's object API
(no pyplot), so no global backend state is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from benchmark.report.stats import logit, logit_fit

LOGIT_TICKS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    png: Path


def _colours(methods: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {m: cmap(i % 20) for i, m in enumerate(methods)}


def severity_plot(table: pd.DataFrame, severity: pd.DataFrame) -> Figure | str:
    """Mean accuracy over the counted corruptions per severity (0 = the uncorrupted
    robustness set, a stratified sample of the test split), per method; the band is ± one
    standard error over seeds."""
    if severity.empty:
        return "no robustness results in these records"
    per_seed = severity.groupby(["method", "seed", "severity"])["acc"].mean() * 100
    spread = per_seed.groupby(["method", "severity"]).agg(["mean", "sem"]).reset_index()
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    colours = _colours(sorted(spread["method"].unique()))
    for method, curve in spread.groupby("method"):
        ax.plot(curve["severity"], curve["mean"], marker="o", color=colours[method], label=method)
        band = curve["sem"].fillna(0)
        ax.fill_between(
            curve["severity"],
            curve["mean"] - band,
            curve["mean"] + band,
            color=colours[method],
            alpha=0.2,
        )
    severities = sorted(spread["severity"].unique())
    ax.set_xticks(severities, ["clean subset" if s == 0 else str(s) for s in severities])
    ax.set(xlabel="corruption severity", ylabel="target accuracy (%)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return figure


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Points no other point beats with fewer (or as many) parameters and higher accuracy."""
    ordered = points.sort_values(["params", "acc"], ascending=[True, False])
    best_before = ordered["acc"].astype(float).cummax().shift(fill_value=-np.inf)
    return ordered[ordered["acc"] > best_before]


def pareto_plot(table: pd.DataFrame, severity: pd.DataFrame) -> Figure | str:
    """Target accuracy (mean over pairs and seeds) against student parameters, per (method,
    student); the Pareto front, over ranked methods only (references are not competitors),
    is the red line."""
    if "params" not in table or table["params"].nunique() < 2:
        return "every run has the same parameter count (or none recorded)"
    groups = table.groupby(["method", "student"])
    points = pd.DataFrame(
        {
            "params": groups["params"].mean() / 1e6,
            "acc": groups["target_acc"].mean() * 100,
            "reference": groups["reference"].all(),
        }
    ).reset_index()
    ranked, refs = points[~points["reference"]], points[points["reference"]]
    front = pareto_front(ranked)
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.scatter(ranked["params"], ranked["acc"], color="tab:blue", label="method")
    ax.scatter(refs["params"], refs["acc"], facecolors="none", edgecolors="grey", label="reference")
    ax.step(
        front["params"],
        front["acc"],
        where="post",
        color="tab:red",
        marker="o",
        markerfacecolor="none",
        markersize=12,
        label="Pareto front (methods)",
    )
    for row in pd.concat([front, refs]).itertuples():
        ax.annotate(f" {row.method} ({row.student})", (row.params, row.acc), fontsize="small")
    ax.set_xscale("log")
    ax.set(xlabel="parameters (millions, log scale)", ylabel="target accuracy (%)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return figure


def heatmap_plot(table: pd.DataFrame, severity: pd.DataFrame) -> Figure | str:
    """Target accuracy (%) per method (rows) and pair (columns), mean over everything else."""
    if table["pair"].nunique() < 2:
        return "one pair only"
    grid = table.pivot_table(index="method", columns="pair", values="target_acc") * 100
    grid = grid.loc[grid.mean(axis=1).sort_values(ascending=False).index]
    figure = Figure(
        figsize=(2 + 1.3 * grid.shape[1], 1.5 + 0.35 * grid.shape[0]), layout="constrained"
    )
    ax = figure.add_subplot()
    image = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    middle = np.nanmean(grid.to_numpy())
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if not np.isnan(value):
            colour = "black" if value > middle else "white"
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=ax, label="target accuracy (%)")
    return figure


def robustness_plot(table: pd.DataFrame, severity: pd.DataFrame) -> Figure | str:
    """Corrupted (mCA) against clean accuracy in logit space, one point per run, with the
    linear fit over baseline-family runs (Taori et al. 2020): distance above the line is
    effective robustness."""
    fit = logit_fit(table)
    if fit is None:
        return "needs mCA and at least two baseline runs with different clean accuracy"
    runs = table.dropna(subset=["clean_subset_acc", "mca"])
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.add_subplot()
    colours = _colours(sorted(runs["method"].unique()))
    for method, group in runs.groupby("method"):
        x, y = logit(group["clean_subset_acc"]), logit(group["mca"])
        ax.scatter(x, y, color=colours[method], label=method, s=18)
    x = np.linspace(
        logit(runs["clean_subset_acc"].min()), logit(runs["clean_subset_acc"].max()), 100
    )
    ax.plot(x, fit[0] * x + fit[1], color="black", linestyle="--", label="baseline fit")
    for axis, values in ((ax.xaxis, runs["clean_subset_acc"]), (ax.yaxis, runs["mca"])):
        ticks = [t for t in LOGIT_TICKS if values.min() - 0.05 <= t <= values.max() + 0.005]
        axis.set_ticks(logit(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set(
        xlabel="clean accuracy on the robustness set (%, logit axis)", ylabel="mCA (%, logit axis)"
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return figure


PLOTS: list[tuple[str, str, Callable[[pd.DataFrame, pd.DataFrame], Figure | str]]] = [
    ("severity", "Accuracy against corruption severity", severity_plot),
    ("pareto", "Target accuracy against student size", pareto_plot),
    ("heatmap", "Target accuracy per pair and method", heatmap_plot),
    ("robustness", "Clean against corrupted accuracy (effective robustness)", robustness_plot),
]


def write_plots(
    table: pd.DataFrame, severity: pd.DataFrame, out_dir: Path
) -> tuple[list[Plot], list[str]]:
    """Draw every plot the data supports as PNG and PDF; a note for each one skipped, and its
    files from an earlier report in `out_dir` removed, so none is read as these runs' plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots, notes = [], []
    for name, title, draw in PLOTS:
        figure = draw(table, severity)
        if isinstance(figure, str):
            notes.append(f"plot '{name}' skipped: {figure}")
            for suffix in ("png", "pdf"):
                (out_dir / f"{name}.{suffix}").unlink(missing_ok=True)
            continue
        plots.append(save(figure, name, title, out_dir))
    return plots, notes


def save(figure: Figure, name: str, title: str, out_dir: Path) -> Plot:
    """PNG and PDF of `figure` under `out_dir`; no creation date, so a remade report is
    byte-identical."""
    figure.suptitle(title)
    figure.savefig(out_dir / f"{name}.png", dpi=120)
    figure.savefig(out_dir / f"{name}.pdf", dpi=120, metadata={"CreationDate": None})
    return Plot(name, title, out_dir / f"{name}.png")


def searched_parameters(values: pd.Series) -> list[str]:
    """The numeric parameters whose value differs between a method's draws."""
    frame = pd.DataFrame(list(values))
    numeric = [c for c in frame if all(isinstance(v, int | float) for v in frame[c].dropna())]
    return [c for c in numeric if frame[c].nunique() > 1]


def sensitivity_plot(draws: pd.DataFrame) -> Figure | str:
    """Test accuracy (%, mean over seeds) of every draw of a search against each searched
    parameter, a row per method and setting (a paper appendix's sensitivity figure); the
    defaults are a star, the draw the selection rule chose a ring. Log axis for a range of
    more than a decade."""
    cells = [(cell, group) for cell, group in draws.groupby(["method", "pair"]) if len(group) > 1]
    if not cells:
        return "no method has more than one draw"
    columns = max(len(searched_parameters(group["values"])) for _, group in cells) or 1
    figure = Figure(figsize=(3.2 * columns, 2.4 * len(cells)), layout="constrained")
    axes = figure.subplots(len(cells), columns, squeeze=False)
    for row, ((method, pair), group) in enumerate(cells):
        values = pd.DataFrame(list(group["values"]), index=group.index)
        names = searched_parameters(group["values"])
        for column in range(columns):
            ax = axes[row][column]
            if column >= len(names):
                ax.set_axis_off()
                continue
            name, test = names[column], group["test"] * 100
            x = values[name].astype(float)
            ax.scatter(x, test, s=14, color="tab:blue")
            for mask, marker in ((group["trial"] == 0, "*"), (group["chosen"], "o")):
                ax.scatter(
                    x[mask], test[mask], s=90, marker=marker, facecolors="none", edgecolors="black"
                )
            if (x > 0).all() and x.max() / x.min() > 10:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set(xlabel=name, ylabel=f"{method}\n{pair}" if column == 0 else "")
            ax.grid(alpha=0.3)
    return figure


def scaling_plot(table: pd.DataFrame) -> Figure:
    """`xdkd bench --scaling`: training images per second against batch size, one line per
    image size, both axes logarithmic (cost grows with pixels, throughput with batch)."""
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    axes = figure.add_subplot()
    for size, rows in table.groupby("image_size"):
        rows = rows.sort_values("batch_size")
        axes.plot(rows["batch_size"], rows["train_img_s"], marker="o", label=f"{size} px")
    axes.set_xscale("log", base=2)
    batches = sorted(table["batch_size"].unique())
    axes.set_xticks(batches, labels=[str(b) for b in batches])
    axes.set_yscale("log")
    axes.set_xlabel("batch size (source images per step; as many target images)")
    axes.set_ylabel("training images / s")
    axes.set_title("Suite KD loop throughput")
    axes.legend(title="image size")
    axes.grid(True, which="both", alpha=0.3)
    return figure
