"""`xdkd`: the command line. Thin: parses, calls the modules, prints."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from benchmark.cli_datasets import add_data_options, add_datasets_command, apply_data_options
from benchmark.cli_report import add_report_commands
from benchmark.errors import XdkdError

EPILOG = "Docs: README.md. Every command takes --help."


def baselines_dir() -> Path:
    return Path(os.environ.get("XDKD_BASELINES", Path(__file__).resolve().parents[1] / "baselines"))


def suite_path(name: str) -> Path:
    """A suite file path, or a bare name in baselines/ (`quick` -> baselines/quick.yaml)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = baselines_dir() / f"{name}.yaml"
    if candidate.exists():
        return candidate
    from benchmark.registry import unknown_name_message

    suites = [p.stem for p in baselines_dir().glob("*.yaml")]
    raise XdkdError(unknown_name_message("suite", name, suites) + " (or give a path to a .yaml)")


def cmd_run(args: argparse.Namespace) -> int:
    apply_data_options(args)
    from benchmark.config import load_suite
    from benchmark.executors import run_sweep
    from benchmark.harness import expand, method_protocols
    from benchmark.provenance import resolve_device
    from benchmark.report import write_leaderboard
    from benchmark.store import RunStore

    suite = load_suite(suite_path(args.suite), args.set)
    specs = expand(suite)
    for note in method_protocols(suite)[1]:
        print(f"note: {note}")
    device = resolve_device(args.device)
    options = executor_options(args)
    out = Path(args.out or Path("runs") / suite.name)
    results = Path(args.results or Path("results") / suite.name)
    store = RunStore(out)
    where = (
        f"Slurm ({options.slurm.cluster})"
        if options.executor == "slurm"
        else describe_workers(device, options)
    )
    print(
        f"suite '{suite.name}': {len(specs)} runs on {where}; "
        f"records in {out}/, leaderboard in {results}/"
    )
    summary = run_sweep(store, specs, device, options)
    print(
        f"{len(summary.done)} runs done, {summary.recorded} already recorded, "
        f"{len(summary.failed)} failed"
        + (f", {summary.not_retried} failed before (not retried)" if summary.not_retried else "")
    )
    for key, label, reason in summary.failed:
        print(f"  failed: {key} {label}: {reason}")
    wanted = {spec.key for spec in specs}
    records = [record for record in store.records() if record.key in wanted]
    if records:
        command = "xdkd " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        _, text = write_leaderboard(records, results, command)
        print(text)
    return 1 if summary.failed or summary.not_retried else 0


def executor_options(args: argparse.Namespace):
    from benchmark.executors import ExecutorOptions, SlurmOptions

    if args.workers is not None and args.workers < 0:
        raise XdkdError(f"--workers {args.workers}: give 0 (in this process) or more")
    if args.jobs_per_gpu < 1:
        raise XdkdError(f"--jobs-per-gpu {args.jobs_per_gpu}: give 1 or more")
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
        jobs_per_gpu=args.jobs_per_gpu,
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


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark.status import print_status, read_status

    root = Path(args.runs)
    if not root.is_dir() and (Path("runs") / args.runs).is_dir():
        root = Path("runs") / args.runs
    if args.retry_failed:
        from benchmark.status import clear_failures

        cleared = clear_failures(root)
        print(f"{cleared} failed runs cleared: the next xdkd run on {root} runs them again")
    status = read_status(root)
    print_status(status, root, verbose=args.all)
    return 1 if status.failed else 0


def cmd_corruptions(args: argparse.Namespace) -> int:
    from benchmark.corruptions import CORRUPTIONS, corruption_names

    if args.action == "show":
        from benchmark.corruptions.grid import save_corruption_grid
        from benchmark.data.domains import load_domain

        if not args.domain:
            raise XdkdError(
                "xdkd corruptions show needs a DOMAIN, e.g. xdkd corruptions show mnistm"
            )
        images = load_domain(args.domain).test_images
        if not 0 <= args.index < len(images):
            raise XdkdError(
                f"--index {args.index} is outside {args.domain}'s test split (0..{len(images) - 1})"
            )
        out = Path(args.out or f"{args.domain}-corruptions.png")
        title = f"{args.domain} test image {args.index}: every corruption at severities 1-5"
        save_corruption_grid(images[args.index], out, title)
        print(f"wrote {out}")
        return 0
    print(f"{'corruption':<18} {'group':<11} severities  in mCA/mCE")
    for name in corruption_names():
        entry = CORRUPTIONS.get(name)
        counted = "yes" if entry.counted else "no"
        print(f"{name:<18} {entry.group:<11} {len(entry.severities):>10}  {counted}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from benchmark.models import backbone_names

    names = backbone_names(args.pattern)
    if not names:
        raise XdkdError(f"no backbone matches '{args.pattern}'; try a glob such as 'resnet*'")
    print("\n".join(names))
    print(f"({len(names)} backbones; lenet and dtn are the digit CNNs, the rest come from timm)")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from benchmark.methods import METHODS

    for name, cls in METHODS.items():
        defaults = ", ".join(f"{k}={v}" for k, v in cls.defaults.items()) or "-"
        print(f"{name:<17} {cls.family:<12} protocols: {', '.join(cls.protocols)}")
        print(f"{'':<17} defaults: {defaults}\n{'':<17} {cls.paper}")
    return 0


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
        help="local worker processes (default: one per visible GPU x --jobs-per-gpu, or one "
        "on CPU, the cores split between them); 0 runs everything in this process",
    )
    local.add_argument(
        "--jobs-per-gpu", type=int, default=1, metavar="K", help="workers per GPU (default 1)"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdkd",
        description="XDKD-Bench: cross-domain knowledge distillation benchmark.",
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    add_data_options(run)
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser(
        "status",
        help="what a runs directory holds: done, failed (with reasons), running, queued",
        description="Read a runs directory (written by xdkd run, by any executor, possibly "
        "still running) and count its runs: done, failed with the reason, running (with host "
        "and pid) and queued. Exit status 1 when some failed.",
    )
    status.add_argument(
        "runs", nargs="?", default="runs/quick", help="runs directory or suite name (runs/NAME)"
    )
    status.add_argument("--all", action="store_true", help="list every run, not only failures")
    status.add_argument(
        "--retry-failed",
        action="store_true",
        help="clear the failures (error.json kept as error.previous.json) so that the next "
        "xdkd run runs them again",
    )
    status.set_defaults(handler=cmd_status)

    add_datasets_command(commands)

    corruptions = commands.add_parser(
        "corruptions",
        help="list corruptions, or draw every corruption at every severity for one image",
        description="list: every corruption with its group and severities; "
        "show DOMAIN --out grid.png [--index I]: one test image under every corruption",
    )
    corruptions.add_argument("action", nargs="?", default="list", choices=["list", "show"])
    corruptions.add_argument("domain", nargs="?")
    corruptions.add_argument("--out", help="PNG path for show (default: DOMAIN-corruptions.png)")
    corruptions.add_argument("--index", type=int, default=0, help="test image index (default 0)")
    corruptions.set_defaults(handler=cmd_corruptions)

    backbones = commands.add_parser("backbones", help="list backbone names (glob pattern)")
    backbones.add_argument("pattern", nargs="?", default="*")
    backbones.set_defaults(handler=cmd_backbones)

    methods = commands.add_parser("methods", help="list methods with family, protocols, defaults")
    methods.set_defaults(handler=cmd_methods)
    add_report_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except XdkdError as error:
        print(f"xdkd: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xdkd: interrupted; finished records are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
