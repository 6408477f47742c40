"""`xdkd datasets ...` and the data options every data-reading command shares."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmark.errors import XdkdError


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data-root and --bad-images; `apply_data_options` puts them in the environment, where
    every process of a sweep (workers, cluster tasks) reads them."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder holding the published datasets (default: $XDKD_DATA, else ~/data)",
    )
    group.add_argument(
        "--bad-images",
        choices=["skip", "stop"],
        help="unreadable or truncated images: skip them with a warning, or stop "
        "(default: $XDKD_BAD_IMAGES, else skip)",
    )


def apply_data_options(args: argparse.Namespace) -> None:
    if args.data_root:
        os.environ["XDKD_DATA"] = str(Path(args.data_root).expanduser().resolve())
    if args.bad_images:
        os.environ["XDKD_BAD_IMAGES"] = args.bad_images


def _list() -> int:
    from benchmark.data.readers import missing
    from benchmark.data.settings import data_root
    from benchmark.data.sources import domain_folder
    from benchmark.suite.families import all_domains

    domains = all_domains()
    width = max(len(name) for name in domains)
    family_width = max(len(info.family) for info in domains.values())
    print(f"data root: {data_root()} (--data-root or XDKD_DATA)")
    print(
        f"{'domain':<{width}} {'family':<{family_width}} {'images':>7} {'classes':>7} "
        f"{'data':<8} source / licence"
    )
    indent = " " * (width + family_width + 26)
    for name, info in domains.items():
        entry = info.entry
        data = "embedded" if info.embedded else "missing" if missing(info) else "present"
        print(
            f"{name:<{width}} {info.family:<{family_width}} {entry.images:>7} "
            f"{info.num_classes:>7} {data:<8} {entry.source or entry.homepage}"
        )
        print(f"{indent}licence: {entry.licence}")
        if data == "missing":
            print(f"{indent}get it from {entry.homepage} into {domain_folder(info)}")
    return 0


def _build(args: argparse.Namespace) -> int:
    from benchmark.data.domains import load_domain
    from benchmark.data.readers import missing
    from benchmark.suite.families import all_domains, domain_info

    names = [args.domain] if args.domain else list(all_domains())
    for name in names:
        info = domain_info(name)
        if not args.domain and not info.embedded and missing(info):
            print(f"{name}: skipped, its data is not under the data root")
            continue
        splits = load_domain(name, size=args.size)
        size = 32 if info.embedded else args.size
        print(
            f"{name}: {len(splits.train_labels)} train, {len(splits.test_labels)} test, {size} px"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    from benchmark.data.domains import load_domain
    from benchmark.data.preview import class_balanced_sample, save_grid
    from benchmark.suite.families import domain_info

    if not args.domain:
        raise XdkdError("xdkd datasets show needs a DOMAIN, e.g. xdkd datasets show mnistm")
    if args.count < 1:
        raise XdkdError(f"--count {args.count}: a grid needs 1 image or more, e.g. --count 64")
    info = domain_info(args.domain)
    splits = load_domain(args.domain, size=args.size)
    images = splits.train_images if args.split == "train" else splits.test_images
    labels = splits.train_labels if args.split == "train" else splits.test_labels
    index = class_balanced_sample(labels, args.count, seed=0)
    out = Path(args.out or f"{args.domain}.png")
    title = f"{args.domain} ({info.family}, {args.split} split, {len(labels)} images)"
    save_grid(images[index], labels[index], info.classes, title, out)
    print(f"wrote {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from benchmark.data.check import check_family, locate_family
    from benchmark.data.settings import data_root

    if not args.domain:
        raise XdkdError("xdkd datasets check needs a FAMILY, e.g. xdkd datasets check office31")
    root = Path(args.root).expanduser().resolve() if args.root else data_root()
    located = locate_family(args.domain, root)
    print(f"checking family '{args.domain}' {located.description}")
    errors = warnings = 0
    for report in check_family(located):
        print(f"{report.name}: {report.summary}")
        for message in report.errors:
            print(f"  ERROR {message}")
        for message in report.warnings:
            print(f"  WARNING {message}")
        errors += len(report.errors)
        warnings += len(report.warnings)
    verdict = "FAILED" if errors else "OK"
    print(f"{verdict}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def cmd_datasets(args: argparse.Namespace) -> int:
    apply_data_options(args)
    actions = {"list": lambda _: _list(), "build": _build, "show": _show, "check": _check}
    return actions[args.action](args)


def add_datasets_command(commands: argparse._SubParsersAction) -> None:
    datasets = commands.add_parser(
        "datasets",
        help="list domains, check a family's data, build caches, or draw a sample grid",
        description="list: every domain with family, expected size, classes, whether its data "
        "is present, source and licence; check FAMILY [--root DIR]: verify a family's data "
        "under the data root (exit 1 on errors); build [DOMAIN] [--size N]: decode into the "
        "cache (XDKD_CACHE) now; show DOMAIN --out grid.png",
    )
    datasets.add_argument(
        "action", nargs="?", default="list", choices=["list", "check", "build", "show"]
    )
    datasets.add_argument(
        "domain", nargs="?", metavar="NAME", help="a domain, or for check a family"
    )
    datasets.add_argument("--out", help="PNG path for show (default: DOMAIN.png)")
    datasets.add_argument("--split", default="train", choices=["train", "test"])
    datasets.add_argument("--count", type=int, default=64, help="images in the grid")
    datasets.add_argument(
        "--size",
        type=int,
        default=32,
        help="image size the cache of a published domain is built at (default 32); "
        "embedded domains are always 32 px",
    )
    datasets.add_argument(
        "--root",
        metavar="DIR",
        help="for check: the data root, or the family's own folder (the one just unpacked); "
        "the first line says which it was taken as (default: the data root)",
    )
    add_data_options(datasets)
    datasets.set_defaults(handler=cmd_datasets)
