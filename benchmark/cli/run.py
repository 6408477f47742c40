"""`xdkd run` and `xdkd evaluate`: sweeps and what they print. Thin: parses, calls the
executors and the report, prints."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.cli.datasets import add_data_options, apply_data_options
from benchmark.errors import XdkdError
from benchmark.files import output_directory
from benchmark.registry import unknown_name_message
from benchmark.shipped import search_path

if TYPE_CHECKING:
    import pandas as pd

    from benchmark.suite.config import SeedPlan


def suite_path(name: str) -> Path:
    """A suite file path, or a bare name found in `$XDKD_BASELINES`'s folders or the shipped
    suites (`quick` -> baselines/quick.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    folders = search_path("baselines")
    for folder in folders:
        if (folder / f"{name}.yaml").exists():
            return folder / f"{name}.yaml"
    suites = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
    raise XdkdError(unknown_name_message("suite", name, suites) + " (or give a path to a .yaml)")


def cmd_run(args: argparse.Namespace) -> int:
    apply_data_options(args)
    from benchmark.data.provider import SplitProvider
    from benchmark.data.setting import check_setting_data
    from benchmark.methods.catalogue import live_catalogue
    from benchmark.provenance import resolve_device
    from benchmark.suite.config import SeedPlan
    from benchmark.suite.expansion import expand_runs
    from benchmark.suite.loader import load_suite

    known = live_catalogue()
    suite = load_suite(suite_path(args.suite), args.set, known)
    expansion = expand_runs(suite, known)
    for note in expansion.notes:
        print(f"note: {note}")
    device = resolve_device(args.device)
    # the settings and the runs' shape are the same whatever seeds a plan adds: once
    options = executor_options(args, expansion.specs, device)
    provider = SplitProvider(device)
    for spec in {s.setting.model_dump_json(): s for s in expansion.specs}.values():
        check_setting_data(provider, spec)
    out = output_directory(Path(args.out or Path("runs") / suite.name), "--out")
    results = output_directory(Path(args.results or Path("results") / suite.name), "--results")
    where = (
        f"Slurm ({options.slurm.cluster})"
        if options.executor == "slurm"
        else describe_workers(device, options)
    )
    selection = "source-val" if suite.source_validation else "last"
    tuned = suite.search.select if suite.search else None
    plan = suite.seeds if isinstance(suite.seeds, SeedPlan) else None
    seeds = suite.first_seeds
    while True:
        print(
            f"suite '{suite.name}': {len(expansion.specs)} runs on {where}; "
            f"records in {out}/, leaderboard in {results}/"
        )
        code, comparison = sweep_and_report(
            expansion.specs, suite.evaluation, out, results, device, options, selection, tuned
        )
        more = None if plan is None or code else next_seed(plan, seeds, comparison)
        if more is None:
            return code
        seeds = [*seeds, more]
        expansion = expand_runs(suite.model_copy(update={"seeds": seeds}), known)


def next_seed(plan: SeedPlan, seeds: list[int], comparison: pd.DataFrame | None) -> int | None:
    """The seed a seed plan adds after `seeds` (None: enough); prints why."""
    from benchmark.report.stats import widest_halfwidth

    width = (
        math.nan if comparison is None else widest_halfwidth(comparison, plan.method, plan.against)
    )
    compared = f"{plan.method or 'every method'} against {plan.against or 'kd and source_only'}"
    shown = "no interval yet" if math.isnan(width) else f"widest 95% interval ±{width:.1f} points"
    bound = f"±{plan.until_halfwidth:g}"
    more = None
    if width <= plan.until_halfwidth:
        verdict = f"within {bound}: done"
    elif len(seeds) >= plan.max:
        verdict = f"not within {bound}, but the plan's max is {plan.max} seeds: done"
    else:
        more = max(seeds) + 1
        verdict = f"not within {bound}: adding seed {more}"
    print(f"seed plan: {len(seeds)} seeds, {compared}: {shown}, {verdict}")
    return more


def sweep_and_report(
    specs,
    evaluation,
    out: Path,
    results: Path | None,
    device,
    options,
    selection,
    tuned_selection: str | None = None,
) -> tuple[int, pd.DataFrame | None]:
    """Run the sweep, print what happened, write and print the leaderboard (and, for a
    search, the tuned one under `tuned_selection` in results/tuned); (exit code, the
    report's comparison, None when nothing was reported)."""
    from benchmark.executors.sweep import run_sweep
    from benchmark.report.leaderboard import write_report
    from benchmark.store import RunStore

    store = RunStore(out)
    summary = run_sweep(store, specs, evaluation, device, options)
    print(
        f"{len(summary.done)} runs done, {summary.recorded} already recorded, "
        f"{len(summary.failed)} failed"
        + (f", {summary.not_retried} failed before (not retried)" if summary.not_retried else "")
    )
    for key, label, reason in summary.failed:
        print(f"  failed: {key} {label}: {reason}")
    records = store.records([spec.key for spec in specs])
    comparison = None
    if records and results is not None:
        command = "xdkd " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        report, text = write_report(records, results, command, selection=selection)
        comparison = report.comparison
        print(text)
        if tuned_selection is not None:  # a search's tuned leaderboard beside the defaults'
            _, text = write_report(
                records, results / "tuned", command, selection=tuned_selection, tuned=True
            )
            print(text)
    return (1 if summary.failed or summary.not_retried else 0), comparison


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate trained runs again under changed evaluation settings; nothing trains."""
    apply_data_options(args)
    from benchmark.methods.catalogue import live_catalogue
    from benchmark.provenance import resolve_device
    from benchmark.store import RunStore
    from benchmark.suite.config import EVALUATION_FIELDS

    for override in args.set:
        field = override.partition("=")[0].split(".")[0]
        if field not in EVALUATION_FIELDS:
            raise XdkdError(
                f"--set {override}: '{field}' is not an evaluation setting; xdkd evaluate "
                f"changes {', '.join(EVALUATION_FIELDS)} (training settings need xdkd run)"
            )
    root = runs_root(args.runs)
    store = RunStore(root)
    known = live_catalogue()
    groups: dict[str, tuple] = {}
    skipped = 0
    for directory in sorted(path for path in (root / "runs").iterdir() if path.is_dir()):
        key = directory.name
        record = store.record(key)
        spec = record.spec if record else store.load_spec(key)
        card = known.methods.get(spec.method.name) if spec else None
        if card is None or (card.trains_student and store.training(key) is None):
            skipped += 1  # not trained (or unreadable): evaluating it would mean training
            continue
        evaluation = evaluation_with(record.evaluation if record else None, args.set, known)
        groups.setdefault(evaluation.key, (evaluation, []))[1].append(spec)
    if not groups:
        raise XdkdError(f"{root} holds no trained runs to evaluate; xdkd run trains them")
    device = resolve_device(args.device)
    options = executor_options(args, [s for _, specs in groups.values() for s in specs], device)
    results = Path(args.results) if args.results else None
    code = 0
    for evaluation, specs in groups.values():
        settings = ", ".join(f"{f}={getattr(evaluation, f)}" for f in EVALUATION_FIELDS)
        print(f"evaluating {len(specs)} trained runs of {root} ({settings})")
        searched = any(s.method.trial is not None for s in specs)
        done, _ = sweep_and_report(
            specs,
            evaluation,
            root,
            results,
            device,
            options,
            args.selection,
            args.selection if searched else None,
        )
        code = max(code, done)
    if skipped:
        print(f"{skipped} runs are not trained (yet) and were left alone: xdkd run trains them")
    if not args.results:
        print(f"report them with: xdkd report {root} --out results/REPORT")
    return code


def evaluation_with(evaluation, overrides: list[str], known):
    """A run's evaluation settings (the defaults when it has none) with `--set` applied."""
    from pydantic import ValidationError

    from benchmark.suite.config import EvalSpec
    from benchmark.suite.yaml_text import apply_overrides, first_problem

    raw = (evaluation or EvalSpec()).model_dump(mode="json")
    apply_overrides(raw, overrides)
    try:
        return EvalSpec.model_validate(raw, context={"catalogue": known})
    except ValidationError as error:
        location, problem = first_problem(error)
        raise XdkdError(f"--set: {'.'.join(map(str, location))}: {problem}") from None


def runs_root(name: str) -> Path:
    """A runs directory, or a suite name whose runs are in runs/NAME."""
    root = Path(name)
    if not root.is_dir() and (Path("runs") / name).is_dir():
        root = Path("runs") / name
    if not (root / "runs").is_dir():
        what = "is a file" if root.is_file() else "is not a runs directory"
        raise XdkdError(
            f"'{root}' {what} (no {root / 'runs'}/); give the --out of an xdkd run, e.g. runs/quick"
        )
    return root


def count_or_auto(text: str) -> int | str:
    """`--jobs-per-gpu`, `--cohort-size`: a number of 1 or more, or `auto`."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not 'auto' or a number of 1 or more")
    return value


def executor_options(args: argparse.Namespace, specs: list, device):
    """The executor's options for a sweep of `specs` on `device` (`--jobs-per-gpu auto`
    measures what one of its runs needs); `--fast-path` and `--log` go in the environment,
    where every worker and cluster task of the sweep reads them."""
    from benchmark.executors.sweep import ExecutorOptions, SlurmOptions
    from benchmark.run.tracking import parse_tracker_names

    if args.fast_path:
        os.environ["XDKD_FAST_PATH"] = args.fast_path
    if args.threads is not None:
        if args.threads < 1:
            raise XdkdError(f"--threads {args.threads}: give 1 or more")
        os.environ["XDKD_THREADS"] = str(args.threads)
    if args.log:  # checked here, before any run starts: a missing package is one line
        os.environ["XDKD_LOG"] = ",".join(parse_tracker_names(",".join(args.log), "--log "))
    if args.workers is not None and args.workers < 0:
        raise XdkdError(f"--workers {args.workers}: give 0 (in this process) or more")
    per_gpu = args.jobs_per_gpu
    if per_gpu == "auto":
        from benchmark.executors.sizing import auto_jobs_per_gpu

        per_gpu, how = auto_jobs_per_gpu(specs, device)
        print(f"--jobs-per-gpu auto: {how}")
    size = args.cohort_size
    if size == "auto":
        from benchmark.executors.cohorts import auto_cohort_size

        size, how = auto_cohort_size(specs, device)
        print(f"--cohort-size auto: {how}")
    slurm = SlurmOptions(
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        gpus_per_task=args.slurm_gpus_per_task,
        cpus_per_task=args.slurm_cpus_per_task,
        mem_gb=args.slurm_mem_gb,
        array_parallelism=args.slurm_array_parallelism,
        account=args.slurm_account,
        max_requeues=args.slurm_max_requeues,
        cluster=args.slurm_cluster,
        detach=args.detach,
    )
    return ExecutorOptions(
        executor=args.executor,
        workers=args.workers,
        jobs_per_gpu=per_gpu,
        cohort_size=size,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        slurm=slurm,
    )


def describe_workers(device, options) -> str:
    from benchmark.executors.local import worker_setups
    from benchmark.provenance import device_description

    setups = worker_setups(device, options.workers, options.jobs_per_gpu)
    if not setups:
        return f"{device_description(device)}, in this process"
    if setups[0].gpu is None:
        return f"{len(setups)} CPU worker(s), {setups[0].threads} thread(s) each"
    gpus = sorted({setup.gpu for setup in setups})
    return f"{len(setups)} worker(s) on GPU(s) {', '.join(map(str, gpus))}"


def add_executor_options(run: argparse.ArgumentParser) -> None:
    local = run.add_argument_group("where runs execute")
    local.add_argument(
        "--executor",
        default="local",
        choices=["local", "slurm"],
        help="local: worker processes on this machine (default); slurm: submitit job arrays",
    )
    local.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: one per visible GPU x --jobs-per-gpu, or on "
        "CPU one per --threads cores); 0 runs everything in this process. Numbers do not "
        "depend on it",
    )
    local.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="CPU intra-op threads of every run, whatever --workers (default: $XDKD_THREADS, "
        "else 1); part of the device a record names: another count rounds differently and "
        "gives other numbers",
    )
    local.add_argument(
        "--jobs-per-gpu",
        type=count_or_auto,
        default=1,
        metavar="K",
        help="workers per GPU (default 1); auto: as many as the memory one run needs allows "
        "(measured with one training step on the GPU), at most one per CPU core",
    )
    local.add_argument(
        "--cohort-size",
        type=count_or_auto,
        default="auto",
        metavar="N",
        help="runs of a seed that differ only in the method train together in one worker, "
        "each teacher run once per batch for all of them; at most N per cohort (1: every run "
        "alone). auto (default): as many as the memory their students keep allows, at most "
        "16. Numbers do not depend on it",
    )
    local.add_argument(
        "--fast-path",
        choices=["auto", "max", "off"],
        help="auto: channels-last, inference mode and, on CUDA, bf16 autocast, TF32 and "
        "fused AdamW, bit-identical run to run; max: also cuDNN autotuning (not "
        "bit-identical) and, on a CPU with bf16 units, bf16 autocast (other numbers than "
        "auto's); off: none (default: $XDKD_FAST_PATH, else auto)",
    )
    slurm = run.add_argument_group("Slurm (--executor slurm)")
    slurm.add_argument("--slurm-partition", metavar="NAME", help="partition (-p)")
    slurm.add_argument("--slurm-account", metavar="NAME", help="account (-A)")
    slurm.add_argument(
        "--slurm-time", type=int, default=240, metavar="MIN", help="time limit per task (240)"
    )
    slurm.add_argument(
        "--slurm-gpus-per-task", type=int, default=1, metavar="G", help="GPUs per task (1)"
    )
    slurm.add_argument(
        "--slurm-cpus-per-task", type=int, default=8, metavar="C", help="CPUs per task (8)"
    )
    slurm.add_argument("--slurm-mem-gb", type=int, metavar="GB", help="memory per task")
    slurm.add_argument(
        "--slurm-array-parallelism",
        type=int,
        default=32,
        metavar="P",
        help="array tasks running at once (32)",
    )
    slurm.add_argument(
        "--slurm-max-requeues",
        type=int,
        default=3,
        metavar="R",
        help="requeues of a preempted or timed-out task (3)",
    )
    slurm.add_argument(
        "--slurm-cluster",
        default="slurm",
        choices=["slurm", "local", "debug"],
        help="slurm, or submitit's local/debug executors to try the same path without a "
        "cluster (default slurm)",
    )
    slurm.add_argument(
        "--detach",
        action="store_true",
        help="submit and return; follow with xdkd status, rerun the command to collect",
    )


def add_log_option(command: argparse.ArgumentParser) -> None:
    """`--log`: the experiment trackers of a sweep (`benchmark.run.tracking`)."""
    command.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="TRACKER",
        help="also log each run's losses, learning rate, validation curves, final metrics and "
        "spec to tensorboard, mlflow (local file store) or wandb (offline), all files in "
        "logs/ of the runs directory; repeatable or comma-separated, e.g. --log "
        "tensorboard,mlflow; each needs its extra, e.g. pip install "
        "'xdkd-bench[tensorboard]' (default: $XDKD_LOG, else none)",
    )


def add_run_commands(commands: argparse._SubParsersAction) -> None:
    """Add `run` and `evaluate` to the `xdkd` subcommands."""
    run = commands.add_parser(
        "run",
        help="run a suite and print its leaderboard",
        description="Run every (pair, teacher, student, method, seed) of a suite. Finished "
        "runs are skipped, teachers are trained once and shared, a failed run is recorded "
        "and the suite goes on.",
    )
    run.add_argument(
        "suite",
        nargs="?",
        default="quick",
        help="suite name in baselines/ or path to a suite YAML (default: quick)",
    )
    run.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N (default: auto)",
    )
    run.add_argument("--out", help="run records directory (default: runs/SUITE)")
    run.add_argument("--results", help="leaderboard directory (default: results/SUITE)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite field, YAML value, dotted keys; repeatable, e.g. "
        "--set seeds=[0,1] --set student_recipe.epochs=2",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="run again the runs (and teachers) that failed before; by default they are "
        "reported and skipped",
    )
    add_executor_options(run)
    add_log_option(run)
    add_data_options(run)
    run.set_defaults(handler=cmd_run)

    add_evaluate_command(commands)


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate trained runs again (new corruptions, held-out domains, floor); no training",
        description="Re-evaluate every trained run of a runs directory from its saved student "
        "weights, with evaluation settings changed by --set (corruptions, corruption_images, "
        "teacher_floor, heldout), and update the records atomically. Nothing trains.",
    )
    evaluate.add_argument("runs", help="runs directory (the --out of xdkd run), or a suite name")
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change an evaluation setting, e.g. --set 'corruptions=[benchmark, shape, "
        "speckle_noise]' --set corruption_images=500",
    )
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    evaluate.add_argument("--results", help="also write the leaderboard here")
    evaluate.add_argument(
        "--selection", default="source-val", help="model-selection rule of that leaderboard"
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.add_argument("--retry-failed", action="store_true", help="evaluate failed ones again")
    add_executor_options(evaluate)
    add_log_option(evaluate)
    add_data_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)
