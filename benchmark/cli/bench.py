"""`xdkd bench`: prints the training-loop comparison and evaluation throughput of a job, writes
them as JSON, and with `--scaling` the scaling table (CSV, Markdown) and its plot."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from benchmark.cli.run import count_or_auto
from benchmark.errors import XdkdError
from benchmark.files import output_directory

CPU_STEPS = {"digits": 30, "office": 3}
GPU_STEPS = {"digits": 200, "office": 50}
CPU_EVAL_IMAGES = {"digits": 1000, "office": 32}
GPU_EVAL_IMAGES = {"digits": 1000, "office": 500}


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmark.provenance import resolve_device
    from benchmark.run.bench import JOBS

    device = resolve_device(args.device)
    job_name = args.job or ("office" if device.type == "cuda" else "digits")
    if job_name not in [*JOBS, "sweep"]:
        from benchmark.registry import unknown_name_message

        raise XdkdError(unknown_name_message("bench job", job_name, [*JOBS, "sweep"]))
    if args.steps is not None and args.steps < 1:
        raise XdkdError(f"--steps {args.steps}: give 1 or more")
    if args.workers < 0:
        raise XdkdError(f"--workers {args.workers}: give 0 or more")
    for flag, values in (
        ("--eval-images", [args.eval_images] if args.eval_images is not None else []),
        ("--scaling-sizes", args.scaling_sizes),
        ("--scaling-batches", args.scaling_batches),
    ):
        if any(value < 1 for value in values):
            raise XdkdError(f"{flag} {' '.join(map(str, values))}: give numbers of 1 or more")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        output_directory(json_path.parent, "--json")
    out = output_directory(Path(args.out), "--out") if args.scaling else None
    if job_name == "sweep":
        return _sweep(args, device, json_path)
    return _bench(args, device, JOBS[job_name], json_path, out)


def _sweep(args, device, json_path: Path | None) -> int:
    from benchmark.executors.bench import SWEEP_METHODS, SWEEP_SEEDS, sweep_bench
    from benchmark.models.backbones import check_backbone_name

    check_backbone_name(args.teacher)
    if args.epochs < 1:
        raise XdkdError(f"--epochs {args.epochs}: give 1 or more")
    size = args.cohort_size
    print(
        f"bench 'sweep': mnist→mnistm, {args.teacher} teacher (one a seed, trained first, "
        f"untimed), lenet student, {len(SWEEP_METHODS)} methods x {len(SWEEP_SEEDS)} seeds, "
        f"{args.epochs} epoch(s); the sweep timed solo (--cohort-size 1), then as cohorts "
        f"(--cohort-size {size})",
        flush=True,
    )
    result = sweep_bench(args.teacher, device, args.epochs, size, keep=None)
    result["command"] = "xdkd " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"{'method':<16}seed  solo img/s  cohort img/s (its share)  identical")
    for row in result["per_run"]:
        print(
            f"{row['method']:<16}{row['seed']:>4}  {row['solo_img_s']:10.0f}  "
            f"{row['cohort_img_s']:24.0f}  {'yes' if row['identical'] else 'NO'}"
        )
    print(
        f"{result['runs']} runs: solo {result['sweep_solo_s']:.0f} s "
        f"({result['sweep_solo_runs_h']:.0f} runs/h), cohorts {result['sweep_cohort_s']:.0f} s "
        f"({result['sweep_cohort_runs_h']:.0f} runs/h): sweep_ratio {result['sweep_ratio']:.2f}x"
    )
    if not result["identical_records"]:
        print("records differ between solo and cohort runs (see 'identical' above)")
    print(f"device: {result['device']}; sweep workers: {', '.join(result['workers'])}")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0 if result["identical_records"] else 1


def _bench(args, device, job, json_path: Path | None, out: Path | None) -> int:
    from benchmark.run.bench import BENCH_CORRUPTIONS, eval_throughput, summary, train_rows

    cuda = device.type == "cuda"
    steps = args.steps or (GPU_STEPS if cuda else CPU_STEPS)[job.name]
    warmup = max(1, min(5, steps // 5))
    images = args.eval_images or (GPU_EVAL_IMAGES if cuda else CPU_EVAL_IMAGES)[job.name]
    print(
        f"bench '{job.name}': {job.student} student, {job.teacher} teacher, {job.image_size} px, "
        f"batches of {job.batch_size} source + {job.batch_size} target images, KD; "
        f"{steps} timed steps after {warmup} warm-up; {args.workers} DataLoader workers",
        flush=True,
    )
    rows = train_rows(job, device, steps, warmup, args.workers, args.compile)
    evaluation = eval_throughput(job, device, images)
    result = summary(job, device, rows, evaluation)
    command = "xdkd " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result["command"] = command
    width = max(len(r.loop) for r in rows)
    print(f"{'training loop':<{width}}  images/s  steps/s  warm-up (s)")
    for row in rows:
        print(f"{row.loop:<{width}}  {row.img_s:8.1f}  {row.steps_s:7.2f}  {row.warmup_s:11.1f}")
    print(
        f"train_ratio (suite, fast path {result['suite_fast_path']} / reference): "
        f"{result['train_ratio']:.2f}x; fast path gain {result['fast_path_gain']:.2f}x"
    )
    if "max_train_ratio" in result:
        print(
            f"max_train_ratio ({result['max_fast_path']}, `--fast-path max`, whose numbers "
            f"differ from auto's / reference): {result['max_train_ratio']:.2f}x"
        )
    print(
        f"evaluation, {images} images, clean and {5 * len(BENCH_CORRUPTIONS)} corrupted cells "
        f"as one stream: student "
        f"{evaluation['eval_img_s']:.0f} images/s, teacher "
        f"{evaluation['teacher_eval_img_s']:.0f} images/s"
    )
    print(f"device: {result['device']}")
    if out is not None:
        result["scaling"] = _scaling(args, device, out, command)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0


def _scaling(args, device, out: Path, command: str) -> list[dict]:
    import pandas as pd

    from benchmark.provenance import device_description
    from benchmark.report.plots import scaling_plot
    from benchmark.run.bench import SCALING_MODELS, scaling_rows

    steps = 10 if device.type == "cuda" else 2
    rows = scaling_rows(device, steps, 1, tuple(args.scaling_sizes), tuple(args.scaling_batches))
    table = pd.DataFrame(rows)
    table.to_csv(out / "scaling.csv", index=False)
    pivot = table.pivot(index="batch_size", columns="image_size", values="train_img_s")
    student, teacher = SCALING_MODELS
    caption = (
        f"Training images per second of the suite's KD loop (fast path auto; {student} student, "
        f"{teacher} teacher; a batch is that many source and as many target images; {steps} "
        f"timed steps after 1 warm-up) on {device_description(device)}.\n\n    {command}\n"
    )
    lines = ["| batch \\ image size | " + " | ".join(f"{c} px" for c in pivot.columns) + " |"]
    lines.append("|---" * (len(pivot.columns) + 1) + "|")
    for batch, values in pivot.iterrows():
        lines.append(f"| {batch} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    (out / "scaling.md").write_text(caption + "\n" + "\n".join(lines) + "\n")
    figure = scaling_plot(table)
    figure.savefig(out / "scaling.png", dpi=120)
    print("\n".join(lines))
    print(f"wrote {out / 'scaling.csv'}, {out / 'scaling.md'} and {out / 'scaling.png'}")
    return rows


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="time the suite's training loop against a plain PyTorch loop, and evaluation",
        description="In one process, on the same job, models, optimizer and loss: the suite's "
        "training loop (once per fast-path setting, each added to the one before) against a "
        "reference loop written the way torchdistill and DomainBed train (torchvision "
        "Dataset, transforms.v2 on the CPU, DataLoader workers, pinned memory); evaluation "
        "throughput over clean and corrupted cells. Jobs: digits (lenet student, resnet18 "
        "teacher, 32 px, embedded mnist->mnistm; the CPU default) and office (resnet18 "
        "student, resnet50 teacher, 224 px, images generated in memory; the GPU default).",
    )
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bench.add_argument(
        "--job",
        help="digits, office or sweep (default: office on CUDA, else digits). sweep: a small "
        "method-comparison sweep (mnist->mnistm, 10 methods, 2 seeds) through the executor, "
        "timed solo and as cohorts",
    )
    bench.add_argument(
        "--teacher",
        default="resnet18",
        metavar="BACKBONE",
        help="the sweep job's teacher (resnet18; e.g. dtn, lenet)",
    )
    bench.add_argument(
        "--epochs", type=int, default=1, metavar="N", help="the sweep job's student epochs (1)"
    )
    bench.add_argument(
        "--cohort-size",
        type=count_or_auto,
        default="auto",
        metavar="N",
        help="the sweep job's cohort size (auto, as xdkd run)",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    bench.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="timed steps per loop (default: digits 30, office 3 on CPU; 200 and 50 on CUDA)",
    )
    bench.add_argument(
        "--workers", type=int, default=2, metavar="N", help="reference DataLoader workers (2)"
    )
    bench.add_argument(
        "--compile", action="store_true", help="also time the suite's loop with torch.compile"
    )
    bench.add_argument(
        "--eval-images",
        type=int,
        metavar="N",
        help="target images per evaluation cell (default: digits 1000; office 32 on CPU, "
        "500 on CUDA)",
    )
    bench.add_argument(
        "--scaling",
        action="store_true",
        help="also time images/s against batch size and image size and write scaling.csv, "
        "scaling.md and scaling.png to --out",
    )
    bench.add_argument(
        "--scaling-sizes",
        type=int,
        nargs="+",
        default=[32, 64, 224],
        metavar="PX",
        help="image sizes of the scaling table (32 64 224)",
    )
    bench.add_argument(
        "--scaling-batches",
        type=int,
        nargs="+",
        default=[16, 64, 128],
        metavar="B",
        help="batch sizes of the scaling table (16 64 128)",
    )
    bench.add_argument("--out", default="benchmarks", help="where --scaling writes (benchmarks)")
    bench.set_defaults(handler=cmd_bench)
