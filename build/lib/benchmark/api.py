"""XDKD-Bench from Python: run a suite, evaluate a model, load records as a table.

Thin on purpose: `run_suite` is `xdkd run` (the same parser and code path), `evaluate_model`
is `xdkd evaluate-model` (`benchmark.run.external`), `load_records` is what `xdkd report` reads.
Errors a person can act on raise `benchmark.errors.XdkdError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch and pandas load when a function needs them
    import pandas as pd
    from torch import nn

    from benchmark.suite.specs import RunRecord


def run_suite(
    suite: str | Path,
    *,
    out: str | Path | None = None,
    results: str | Path | None = None,
    overrides: Iterable[str] = (),
    device: str = "auto",
    workers: int = 0,
    progress: bool = True,
    selection: str = "source-val",
) -> pd.DataFrame:
    """Run a suite as `xdkd run` does (finished runs skipped, the leaderboard written to
    `results`, default results/SUITE) and return the records table of its runs directory
    (`out`, default runs/SUITE; every record there, one row each). `overrides` are `--set`
    values; `workers=0` runs everything in this process. A failed run is recorded and
    printed, and missing from the table.

        >>> from benchmark import api
        >>> table = api.run_suite("quick", overrides=["seeds=[0]"], device="cpu")
        >>> table.groupby("method")["target_acc"].mean()
    """
    from benchmark.cli import build_parser, check_environment
    from benchmark.cli.run import suite_path
    from benchmark.suite.loader import load_suite

    overrides = list(overrides)
    name = load_suite(suite_path(str(suite)), overrides).name
    root = Path(out) if out is not None else Path("runs") / name
    argv = ["run", str(suite), "--out", str(root), "--device", device, "--workers", str(workers)]
    argv += ["--results", str(results)] if results is not None else []
    argv += [f"--set={value}" for value in overrides]
    argv += [] if progress else ["--no-progress"]
    args = build_parser().parse_args(argv)
    check_environment()
    args.handler(args)
    return load_records(root, selection)


def evaluate_model(
    model_or_weights: nn.Module | str | Path,
    *,
    backbone: str | None = None,
    domain: str,
    source: str | None = None,
    family_heldout: bool = False,
    corruptions: list[str] | None = None,
    corruption_images: int | None = None,
    image_size: int | None = None,
    name: str | None = None,
    suite: str = "external",
    protocol: str | dict[str, Any] = "uda",
    device: str = "auto",
    out: str | Path | None = None,
) -> RunRecord:
    """Score a model under the suite's evaluation, as `xdkd evaluate-model` does: a module
    already built (left as it is: a copy is evaluated) or a weights file with the `backbone`
    it is for. Its record is written into the runs directory `out` when given, where
    `load_records` and `xdkd report` show it as the row `NAME (external)`.

        >>> record = api.evaluate_model(
        ...     "mine.pt", backbone="lenet", domain="mnistm", source="mnist", out="runs/external"
        ... )
        >>> record.metrics["target_acc"], record.metrics["source_acc"]
    """
    from benchmark.files import output_directory
    from benchmark.run.external import evaluate_model as evaluate
    from benchmark.run.external import write_external

    root = None if out is None else output_directory(Path(out), "out")
    record = evaluate(
        model_or_weights,
        backbone=backbone,
        domain=domain,
        source=source,
        family_heldout=family_heldout,
        corruptions=corruptions,
        corruption_images=corruption_images,
        image_size=image_size,
        name=name,
        suite=suite,
        protocol=protocol,
        device=device,
    )
    if root is not None:
        write_external(record, root)
    return record


def load_records(runs_dir: str | Path, selection: str = "source-val") -> pd.DataFrame:
    """Every record under `runs_dir` (at any depth) as the tidy table `xdkd report` builds:
    a row per run, a column per metric, clean metrics of the epoch `selection` chose.

        >>> table = api.load_records("runs")
        >>> table[table["external"]][["method", "pair", "target_acc"]]
    """
    from benchmark.report.tidy import load_runs, records_table

    records, _ = load_runs(Path(runs_dir))
    return records_table(records, selection)
