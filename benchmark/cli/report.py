"""`xdkd report` and `xdkd check`: the reporting half of the command line.

Kept apart from `benchmark.cli` so reporting can grow without touching the run commands;
`add_report_commands` adds both subcommands to cli.py's subparsers.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmark.errors import XdkdError


def _command_line() -> str:
    return "xdkd " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def names(text: str | None) -> list[str]:
    """A comma-separated flag's names, blanks dropped (`--rows`, `--reference`, `--by`)."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark.files import output_directory
    from benchmark.report.leaderboard import write_report
    from benchmark.report.tidy import load_runs

    records, errors = load_runs(Path(args.runs_dir))
    out = output_directory(Path(args.out), "--out")
    _, text = write_report(
        records,
        out,
        _command_line(),
        rows=names(args.rows) or None,
        selection=args.selection,
        references=names(args.reference),
        errors=errors,
        by=names(args.by),
        tuned=args.tuned,
    )
    print(text)
    return 0


def magnitude(value: str, flag: str) -> float:
    """A flag's non-negative number; parsed here, not by argparse, so a bad value is one
    line on stderr."""
    try:
        number = float(value)
    except ValueError:
        raise XdkdError(f"{flag} '{value}' is not a number") from None
    if not number >= 0:
        raise XdkdError(f"{flag} '{value}' is negative; it is a magnitude")
    return number


def per_metric(values: list[str], flag: str, default: float) -> dict[str, float]:
    """`--abs-tol 0.3 --abs-tol target_ece=0.2`: a bare value for every metric, METRIC=VALUE
    for one; the key '*' holds the value for all metrics not named."""
    parsed = {"*": default}
    for value in values:
        metric, _, number = value.rpartition("=")
        parsed[metric or "*"] = magnitude(number, flag)
    return parsed


def cmd_check(args: argparse.Namespace) -> int:
    from benchmark.report.check import (
        DEFAULT_METRICS,
        Settings,
        run_check,
        write_baseline,
        write_json,
    )
    from benchmark.suite.selection import DEFAULT_RULE

    baseline, runs_dir = Path(args.baseline), Path(args.runs_dir)
    noise = None if args.machine_noise is None else magnitude(args.machine_noise, "--machine-noise")
    if args.update_baseline:
        rule = args.selection or DEFAULT_RULE
        noise = noise or 0.0
        noise_from = Path(args.noise_from) if args.noise_from else None
        cells = write_baseline(baseline, runs_dir, rule, _command_line(), noise, noise_from)
        measured = f", each cell's noise measured against {noise_from}" if noise_from else ""
        print(
            f"wrote baseline {baseline}: {cells} cells from {runs_dir}, machine noise "
            f"{noise:g}{measured}"
        )
        return 0
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else []
    settings = Settings(
        metrics=metrics or list(DEFAULT_METRICS),
        abs_tol=per_metric(args.abs_tol, "--abs-tol", 0.5),
        z=per_metric(args.z, "--z", 2.0),
        drift=magnitude(args.drift, "--drift"),
        allow_missing=args.allow_missing,
        selection=args.selection,
        machine_noise=noise,
    )
    result = run_check(runs_dir, baseline, settings)
    print(result.summary)
    if args.json:
        write_json(result, Path(args.json), settings)
    return result.exit_code


def add_report_commands(commands: argparse._SubParsersAction) -> None:
    """Add `report` and `check` to the `xdkd` subcommands."""
    from benchmark.suite.selection import DEFAULT_RULE, RULES

    report = commands.add_parser(
        "report",
        help="tables, plots and an HTML page from run records",
        description="Leaderboard (mean ± SE over seeds, ranked, references unranked), paired "
        "comparison against a reference method, tidy tables (CSV, Parquet), plots (PNG, PDF), "
        "Markdown, LaTeX and one self-contained HTML page.",
    )
    report.add_argument("runs_dir", nargs="?", default="runs", help="run records (default: runs)")
    report.add_argument("--out", default="results/report", help="(default: results/report)")
    report.add_argument(
        "--rows",
        help="leaderboard row keys, comma-separated (default: method,protocol,teacher,student)",
    )
    report.add_argument(
        "--selection",
        default=DEFAULT_RULE,
        choices=list(RULES),
        help=f"model-selection rule (default {DEFAULT_RULE}; oracle reads target labels and "
        "is flagged, never ranked)",
    )
    report.add_argument(
        "--reference",
        default="kd,source_only",
        help="methods every other is compared with, paired by cell, comma-separated "
        "(default: kd,source_only)",
    )
    report.add_argument(
        "--by",
        help="split the paired comparison and the rank uncertainty per value of these "
        "columns, comma-separated, from pair, teacher, student, protocol, e.g. --by pair for "
        "a test per pair (default: pooled over them)",
    )
    report.add_argument(
        "--tuned",
        action="store_true",
        help="runs of a hyperparameter search (a suite's search:): rank each method's draw "
        "with the best validation score under --selection, and write the fragility table and "
        "sensitivity plot (default: the defaults' leaderboard)",
    )
    report.set_defaults(handler=cmd_report)

    check = commands.add_parser(
        "check",
        help="compare runs with a baseline file (exit 1 regressed, 3 missing)",
        description="Per cell (pair, teacher, student, method, protocol) and metric: pass, "
        "improved, regressed, failed, missing, new or incomparable. Exit 0 fine, 1 regression, "
        "failed run or drift, 2 bad usage, 3 missing or incomparable cells.",
    )
    check.add_argument("runs_dir", nargs="?", default="runs", help="run records (default: runs)")
    check.add_argument("--baseline", required=True, help="baseline JSON file")
    check.add_argument(
        "--metrics", help="comma-separated (default: target_acc,heldout_mean_acc,mca)"
    )
    check.add_argument(
        "--abs-tol",
        action="append",
        default=[],
        metavar="[METRIC=]POINTS",
        help="smallest change that counts, in points (default 0.5); repeatable per metric",
    )
    check.add_argument(
        "--z",
        action="append",
        default=[],
        metavar="[METRIC=]Z",
        help="standard errors a change must exceed (default 2); repeatable per metric",
    )
    check.add_argument("--drift", default="0.25", help="suite mean change bound, points (0.25)")
    check.add_argument(
        "--machine-noise",
        metavar="POINTS",
        help="how far a cell's mean may move on another machine, same spec and seeds; no "
        "regression or drift is smaller (with --update-baseline: stored in the baseline; "
        "default: the baseline's)",
    )
    check.add_argument(
        "--noise-from",
        metavar="RUNS_DIR",
        help="with --update-baseline: the same suite's runs on another machine or kernel set "
        "(e.g. ATEN_CPU_CAPABILITY=avx2); each cell stores its measured change and gets a "
        "bound of at least twice it",
    )
    check.add_argument("--allow-missing", action="store_true", help="missing cells exit 0")
    check.add_argument("--selection", choices=list(RULES), help="default: the baseline's")
    check.add_argument("--json", help="write the full comparison to this JSON file")
    check.add_argument(
        "--update-baseline", action="store_true", help="write --baseline from the runs instead"
    )
    check.set_defaults(handler=cmd_check)
