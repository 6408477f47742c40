"""`xdkd report`: every artefact of a set of runs, in one directory.

records.csv/.parquet (one row per run), summary.csv/.parquet (per cell and metric: n, mean,
standard error, 95% t-interval over seeds), leaderboard.csv/.md/.tex, comparison.csv (every
method against each reference method, paired), ranks.csv (how sure each rank is, by bootstrap
over seeds), plots/*.png|pdf and index.html (tables and plots in one self-contained page).
`write_report` is also what `xdkd run` calls after a suite.
"""

from __future__ import annotations

import base64
import html
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import XdkdError
from benchmark.report.board import Board, floor_warnings, leaderboard
from benchmark.report.claims import CLAIMS_FILE, judged, load_claims, render, sentence, write_claims
from benchmark.report.plots import Plot, save, sensitivity_plot, write_plots
from benchmark.report.render import (
    board_html,
    board_latex,
    comparison_text,
    html_table,
    intervals_text,
    labels,
    latex,
    markdown,
    number,
    ranks_text,
    terminal,
)
from benchmark.report.stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    POWER,
    SPLITS,
    TIE_POINTS,
    WILCOXON_MIN_N,
    NullSpread,
    effective_robustness,
    judge,
    measure_null,
    paired_comparison,
    rank_uncertainty,
    summarise,
)
from benchmark.report.tidy import CELL, cell_of, records_table, severity_table
from benchmark.report.tuning import Tuning, defaults_only, searched
from benchmark.report.tuning import tuned as tuned_runs
from benchmark.suite.config import REFERENCES
from benchmark.suite.metrics import METRICS
from benchmark.suite.selection import DEFAULT_RULE, RULES
from benchmark.suite.specs import RunRecord

NOT_METRICS = ("seed", "teacher_floor")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table.table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
table.table caption { caption-side: bottom; text-align: left; color: #555; padding-top: .5em; }
table.table th, table.table td { padding: 3px 8px; border-bottom: 1px solid #ddd; }
table.table td { text-align: right; white-space: nowrap; }
table.table th { background: #f3f3f3; border-bottom: 2px solid #888; }
figure { margin: 1em 0; } img { max-width: 100%; } .meta, .notes { color: #555; }
"""


@dataclass
class Report:
    """What a report is made of; every output format is rendered from this."""

    table: pd.DataFrame
    board: Board
    comparison: pd.DataFrame
    comparison_caption: str
    ranks: pd.DataFrame
    ranks_caption: str
    notes: list[str]
    plots: list[Plot]
    footer: str
    summary: pd.DataFrame
    null: NullSpread  # what the A/A controls measured (n 0: none)
    claims: list = field(default_factory=list)  # (claim, its row, true?) from claims.yaml
    search: Tuning | None = None  # which runs of a search this leaderboard ranks (or None)
    fragility_caption: str = ""

    @property
    def title(self) -> str:
        return f"XDKD-Bench report: {', '.join(sorted(set(self.table['suite']))) or 'runs'}"

    @property
    def shown_comparison(self) -> pd.DataFrame | None:
        return None if self.comparison.empty else comparison_text(self.comparison)

    @property
    def shown_ranks(self) -> pd.DataFrame | None:
        return None if self.ranks.empty else ranks_text(self.ranks)

    @property
    def search_caption(self) -> str:
        return self.search.caption if self.search else ""

    @property
    def shown_fragility(self) -> pd.DataFrame | None:
        if self.search is None or self.search.fragility.empty:
            return None
        return fragility_text(self.search.fragility)


def comparison_caption(
    references: list[str], selection: str, null: NullSpread, rows: int, by: Sequence[str] = ()
) -> str:
    pooled = f", one comparison per {' and '.join(by)}" if by else " and pairs"
    level = round(100 * (1 - ALPHA))
    return (
        f"Target accuracy minus the reference method's ({', '.join(references)}: the "
        "`against` column), in points, per (pair, teacher, student, protocol, seed) cell "
        f"(within each cell of a grid), paired over seeds{pooled}; model selection: "
        f"{RULES[selection].caption}. {level}% CI: t-interval of the mean difference. "
        f"MDE: the minimal detectable effect, the smallest true difference a paired t-test "
        f"at {ALPHA:g} finds with power {POWER:g} at this n and spread. W/T/L: wins, ties "
        f"(|difference| < {TIE_POINTS} points), losses. Test: two-sided Wilcoxon signed-rank "
        f"where n ≥ {WILCOXON_MIN_N}, else paired t-test; none under 2 cells. p (Holm): "
        f"corrected over all {rows} comparisons of this report (each row one test). "
        f"{null.caption} Holds: corrected p < {ALPHA:g}, the {level}% CI excludes 0 and the "
        "mean difference is beyond the null spread (where measured); a comparison that "
        "does not hold is no finding, whatever its sign in every seed."
    )


def ranks_caption(selection: str, by: Sequence[str] = ()) -> str:
    within = "each protocol" + "".join(f" and each {c}" for c in by if c != "protocol")
    return (
        f"How sure each rank is: over {BOOTSTRAP_RESAMPLES} bootstrap resamples of the seeds "
        "(each pair's seeds drawn with replacement, one draw for every row, so rows stay "
        "paired; seeded, so the same records give the same shares), the share of resamples in "
        "which a row ranks first by its mean target accuracy (ties count for each tied row), "
        f"its mean rank and the 95% interval of its rank; ranked within {within}. With one "
        f"seed per pair there is nothing to resample. Model selection: {RULES[selection].caption}."
    )


def run_notes(table: pd.DataFrame, errors: list[dict[str, Any]]) -> list[str]:
    """Failed runs and teachers under their floor: what a reader must know to trust a row."""
    notes = []
    for error in errors:
        try:
            cell = cell_of(error["spec"])
            what = (
                f"{cell['method']} {cell['pair']} [{cell['protocol']}] seed {error['spec']['seed']}"
            )
        except (KeyError, TypeError, ValueError):
            what = "(its spec is unreadable)"
        notes.append(f"failed run {error.get('key')}: {what}: {error['error']}")
    return notes + floor_warnings(table) + under_trained_notes(table)


def under_trained_notes(table: pd.DataFrame) -> list[str]:
    """One line per method with under-trained runs (‡), and how many of its runs they are."""
    counts = table.groupby("method", sort=False)["under_trained"].agg(["sum", "count"])
    flagged = counts[counts["sum"] > 0]
    if flagged.empty:
        return []
    shown = ", ".join(f"{m} {int(r['sum'])} of {int(r['count'])}" for m, r in flagged.iterrows())
    return [f"under-trained runs (‡: source validation still rising at the end): {shown}"]


def write_report(
    records: list[RunRecord] | list[dict[str, Any]],
    out_dir: Path,
    command: str,
    rows: list[str] | None = None,
    selection: str = DEFAULT_RULE,
    references: tuple[str, ...] | list[str] = REFERENCES,
    errors: list[dict[str, Any]] | None = None,
    by: Sequence[str] = (),
    tuned: bool = False,
) -> tuple[Report, str]:
    """Compute every table and plot, write them all under `out_dir`; return the report and
    its terminal text. `by` splits the paired comparison and the rank uncertainty (e.g. per
    pair); the leaderboard has a column per pair either way. Runs of a hyperparameter
    search: the defaults are ranked, or with `tuned` each method's chosen draw
    (`benchmark.report.tuning`)."""
    unknown = [column for column in by if column not in SPLITS]
    if unknown:
        raise XdkdError(f"--by: '{unknown[0]}' is not one of {', '.join(SPLITS)}")
    search, records, errors, whole = search_runs(records, errors or [], selection, tuned)
    table = records_table(records, selection)
    trained = table[~table["reference"] | (table["family"] != "baseline")]
    if selection != "last" and len(trained) and trained["target_acc"].isna().all():
        raise XdkdError(
            f"under --selection {selection} no run has a chosen epoch (their suites hold out "
            "no validation images: source_validation or target_validation 0); use "
            "--selection last"
        )
    # the tuned leaderboard's null: the controls against the defaults, from the whole search
    null = measure_null(table if whole is None else whole[whole["key"].isin(search.null_keys)])
    everything, table = table, table[~table["control"]].reset_index(drop=True)
    table["eff_robustness"] = effective_robustness(table)
    # the controls' rows stay in records and summary, without a fit of their own
    everything["eff_robustness"] = everything["key"].map(table.set_index("key")["eff_robustness"])
    board = leaderboard(table, rows, selection, null)
    notes = run_notes(table, errors or []) + board.notes
    comparisons = []
    for reference in references:
        if reference not in set(table["method_name"]):
            notes.append(f"no paired comparison against {reference}: no '{reference}' runs")
            continue
        compared = paired_comparison(table, reference, by=by)
        if compared.empty:
            notes.append(f"no paired comparison: no method shares a cell with '{reference}'")
        comparisons.append(compared.assign(against=reference))
    compared = pd.concat(comparisons, ignore_index=True) if comparisons else pd.DataFrame()
    compared = judge(compared, null.points) if len(compared) else compared
    oracle = RULES[selection].oracle  # target labels chose the epochs: never ranked
    rows = list(board.mean.index.names)
    ranks = pd.DataFrame() if oracle else rank_uncertainty(table, rows, by=by)
    metrics = [c for c in table.select_dtypes("number").columns if c not in NOT_METRICS]
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(everything, CELL, metrics)
    for name, frame in (("records", everything), ("summary", summary)):
        frame.to_csv(out_dir / f"{name}.csv", index=False)
        frame.to_parquet(out_dir / f"{name}.parquet", index=False, engine="pyarrow")
    board.flat().to_csv(out_dir / "leaderboard.csv", index=False, float_format="%.4f")
    compared.to_csv(out_dir / "comparison.csv", index=False, float_format="%.4f")
    ranks.to_csv(out_dir / "ranks.csv", index=False, float_format="%.4f")
    claims = []
    if (out_dir / CLAIMS_FILE).is_file():  # the folder's README claims, rendered from here
        asserted = load_claims(out_dir / CLAIMS_FILE)
        if asserted.tuned != tuned:
            fix = (
                "its claims are about the tuned leaderboard: add --tuned"
                if asserted.tuned
                else "its claims are about the defaults' leaderboard: leave out --tuned"
            )
            raise XdkdError(f"{out_dir / CLAIMS_FILE}: {fix}, or give another --out")
        claims = judged(compared, asserted)
        write_claims(out_dir / "README.md", render(compared, asserted, null.caption))
        notes += [f"claim false: {sentence(*entry)[2:]}" for entry in claims if not entry[2]]
    severities = severity_table(records)
    severities = severities[severities["key"].isin(set(table["key"]))]
    plots, plot_notes = write_plots(table, severities, out_dir / "plots")
    if search is not None and not search.fragility.empty:
        search.fragility.to_csv(out_dir / "fragility.csv", index=False, float_format="%.4f")
        figure = sensitivity_plot(search.draws)
        if isinstance(figure, str):
            plot_notes.append(f"plot 'sensitivity' skipped: {figure}")
        else:
            title = "Test accuracy against each searched hyperparameter"
            plots.append(save(figure, "sensitivity", title, out_dir / "plots"))
    report = Report(
        table=table,
        board=board,
        comparison=compared,
        comparison_caption=comparison_caption(list(references), selection, null, len(compared), by),
        ranks=ranks,
        ranks_caption=ranks_caption(selection, by),
        notes=notes + plot_notes,
        plots=plots,
        footer=footer_line(table, command),
        summary=summary,
        null=null,
        claims=claims,
        search=search,
        fragility_caption=fragility_caption(search.fragility, selection)
        if search is not None and not search.fragility.empty
        else "",
    )
    (out_dir / "leaderboard.md").write_text(markdown_page(report, out_dir))
    metadata = report_metadata(everything, report, selection, list(references), command)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n")
    (out_dir / "leaderboard.tex").write_text(latex_page(report))
    (out_dir / "index.html").write_text(html_page(report))
    return report, terminal_text(report, out_dir)


METADATA_FILE = "report.json"


def search_runs(
    records: list[RunRecord], errors: list[dict[str, Any]], selection: str, tuned: bool
) -> tuple[Tuning | None, list[RunRecord], list[dict[str, Any]], pd.DataFrame | None]:
    """(what the search part of the report says, the records to rank, the failures to
    list, the whole search's table where the tuned choice needed it): unchanged without
    search draws; else the defaults, or each method's chosen draw. The failures of draws are
    counted in the fragility table, not listed."""
    if not searched(records):
        if tuned:
            raise XdkdError(
                "--tuned: these runs hold no search draws; a suite's `search: {trials: 8}` "
                "makes them (docs/tuning.md)"
            )
        return None, records, errors, None
    defaults = [e for e in errors if not ((e.get("spec") or {}).get("method") or {}).get("trial")]
    if not tuned:
        search = defaults_only(records)
        return search, search.records, defaults, None
    whole = records_table(records, selection)
    search = tuned_runs(records, errors, selection, whole.set_index("key")["target_acc"])
    return search, search.records, defaults, whole


def fragility_text(fragility: pd.DataFrame) -> pd.DataFrame:
    """The fragility table as shown: points with one decimal."""
    shown = fragility[["method", "pair", "protocol", "draws"]].copy()
    shown["draws"] = shown["draws"].astype(str)
    for column, title in (
        ("failed_share", "failed %"),
        ("median", "median"),
        ("iqr", "IQR"),
        ("defaults", "defaults"),
        ("chosen", "chosen"),
        ("chosen_minus_defaults", "chosen − defaults"),
        ("best_by_test", "best by test"),
    ):
        sign = column == "chosen_minus_defaults"
        shown[title] = fragility[column].map(lambda v, sign=sign: number(v, sign=sign))
    shown["chosen trial"] = fragility["chosen_trial"].astype(str)
    shown["chosen values"] = fragility["chosen_values"]
    return shown


def fragility_caption(fragility: pd.DataFrame, selection: str) -> str:
    draws = ", ".join(sorted({str(d) for d in fragility["draws"]}))
    return (
        f"Fragility over the search: {draws} draws per method and setting (the defaults as "
        "trial 0 and random draws of its search space), each draw's target accuracy (%) the "
        "mean over its seeds. median, IQR: over the draws; failed %: share of the search's "
        f"runs that failed; chosen: the draw the selection rule ({RULES[selection].caption}) "
        "picked on validation; best by test: the best draw by test accuracy (reads target "
        "labels: described, never used to choose)."
    )


def report_metadata(
    everything: pd.DataFrame,
    report: Report,
    selection: str,
    references: list[str],
    command: str,
) -> dict[str, Any]:
    """What the report's tables are, as data: the selection rule, protocols, seeds, the
    suites' runs and each metric's unit. `xdkd site` (and any other reader) reads this file
    rather than parsing the captions, which say the same in words."""
    rule = RULES[selection]
    table = everything[~everything["control"]]

    def names(column: str) -> list[str]:
        return sorted(set(table[column].astype(str)))

    return {
        "format": 1,
        "suites": names("suite"),
        "selection": {"rule": selection, "caption": rule.caption, "oracle": rule.oracle},
        "protocols": names("protocol"),
        "seeds": sorted(int(seed) for seed in set(table["seed"])),
        "runs": len(table),
        "control_runs": len(everything) - len(table),
        "pairs": names("pair"),
        "methods": names("method"),
        "teachers": names("teacher"),
        "students": names("student"),
        "references": references,
        "null": report.null.caption if report.null is not None else None,
        # runs of a search: which leaderboard this is ("defaults" or "tuned")
        **(
            {"search": "tuned" if report.shown_fragility is not None else "defaults"}
            if report.search is not None
            else {}
        ),
        "caption": report.board.caption,
        "metrics": {
            name: {"label": m.label, "unit": m.unit, "scale": m.scale, "caption": m.caption}
            for name, m in METRICS.items()
            if name in table.columns
        },
        "command": command,
    }


def footer_line(table: pd.DataFrame, command: str) -> str:
    devices = ", ".join(sorted(set(table["device"]) - {""})) or "unknown device"
    codes = ", ".join(sorted(set(table["code"]) - {""})) or "unknown"
    return f"Made by `{command}` from runs on {devices}, code {codes}."


def markdown_page(report: Report, out_dir: Path) -> str:
    """The Markdown report; plots are linked relative to it, so keep the directory whole."""
    parts = [f"# {report.title}", *filter(None, [report.search_caption]), report.board.caption]
    parts.append(markdown(report.board))
    intervals = intervals_text(report.board)
    parts += [intervals] if intervals else []
    parts += ["\n".join(f"- {note}" for note in report.notes)] if report.notes else []
    fragility = report.shown_fragility
    if fragility is not None:
        parts += ["## Fragility over the search", report.fragility_caption]
        parts.append(fragility.to_markdown(index=False, disable_numparse=True))
    shown = report.shown_comparison
    if shown is not None:
        parts += ["## Paired comparison", report.comparison_caption]
        parts.append(shown.to_markdown(index=False, disable_numparse=True))
    ranks = report.shown_ranks
    if ranks is not None:
        parts += ["## Rank uncertainty", report.ranks_caption]
        parts.append(ranks.to_markdown(index=False, disable_numparse=True))
    if report.plots:
        parts.append("## Plots")
        parts += [f"![{p.title}]({p.png.relative_to(out_dir).as_posix()})" for p in report.plots]
    return "\n\n".join([*parts, report.footer]) + "\n"


def latex_page(report: Report) -> str:
    """Leaderboard and comparison as booktabs tables, ready to paste into a paper."""
    tex = "% needs \\usepackage{booktabs}\n" + board_latex(report.board)
    shown = report.shown_comparison
    if shown is not None:
        left = labels(shown)
        tex += "\n" + latex(shown, report.comparison_caption, "tab:xdkd-comparison", left=left)
    ranks = report.shown_ranks
    if ranks is not None:
        tex += "\n" + latex(ranks, report.ranks_caption, "tab:xdkd-ranks", left=labels(ranks))
    fragility = report.shown_fragility
    if fragility is not None:
        tex += "\n" + latex(fragility, report.fragility_caption, "tab:xdkd-fragility", left=3)
    return tex


def html_page(report: Report) -> str:
    """One self-contained page: styles inline, plots as base64 PNG, no external files."""
    body = [f"<h1>{html.escape(report.title)}</h1>"]
    body += [f"<p class='meta'>{html.escape(report.footer)}</p>"]
    body += ["<h2>Leaderboard</h2>"]
    body += [f"<p>{html.escape(report.search_caption)}</p>"] if report.search_caption else []
    body.append(board_html(report.board))
    if report.notes:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
        body.append(f"<ul class='notes'>{items}</ul>")
    shown = report.shown_comparison
    if shown is not None:
        comparison = html_table(shown, report.comparison_caption, labels(shown))
        body += ["<h2>Paired comparison</h2>", comparison]
    ranks = report.shown_ranks
    if ranks is not None:
        ranking = html_table(ranks, report.ranks_caption, labels(ranks))
        body += ["<h2>Rank uncertainty</h2>", ranking]
    fragility = report.shown_fragility
    if fragility is not None:
        shown = html_table(fragility, report.fragility_caption, 3)
        body += ["<h2>Fragility over the search</h2>", shown]
    body += ["<h2>Per cell</h2>", cell_details(report.summary)]
    if report.plots:
        body.append("<h2>Plots</h2>")
    for plot in report.plots:
        data = base64.b64encode(plot.png.read_bytes()).decode()
        body.append(
            f"<figure><img alt='{html.escape(plot.title)}' src='data:image/png;base64,{data}'>"
            "</figure>"
        )
    head = f"<meta charset='utf-8'><title>{html.escape(report.title)}</title>"
    return (
        f"<!doctype html>\n<html><head>{head}<style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def cell_details(summary: pd.DataFrame) -> str:
    """Target accuracy per cell with its 95% interval, folded away: the numbers behind the
    leaderboard's averages."""
    cells = summary[summary["metric"] == "target_acc"].drop(columns="metric")
    points = cells[["mean", "se", "ci_low", "ci_high"]].mul(100).map(number)
    shown = pd.concat([cells[CELL + ["n"]], points], axis=1)
    shown.columns = [*CELL, "n", "mean", "se", "95% CI low", "95% CI high"]
    table = html_table(shown.astype(str), "Target accuracy (%) per cell over seeds.", len(CELL))
    summary_line = "<summary>Target accuracy per cell (n, mean, SE, 95% CI)</summary>"
    return f"<details>{summary_line}{table}</details>"


def terminal_text(report: Report, out_dir: Path) -> str:
    parts = [textwrap.fill(report.search_caption, 100)] if report.search_caption else []
    parts.append(terminal(report.board))
    intervals = intervals_text(report.board)
    parts += [textwrap.fill(intervals, 100)] if intervals else []
    parts.append(textwrap.fill(report.board.caption + " (* = best)", 100))
    shown = report.shown_comparison
    if shown is not None:
        parts += ["paired comparison (points):", shown.to_string(index=False)]
    fragility = report.shown_fragility
    if fragility is not None:
        parts += ["fragility over the search (points):", fragility.to_string(index=False)]
    parts += [f"note: {note}" for note in report.notes]
    parts.append(f"report: {out_dir / 'index.html'}")
    return "\n".join(parts)
