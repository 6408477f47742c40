"""Times the evaluation path on this machine: building a domain, generating its corrupted
test set, loading it from the cache, and the 15 x 5 robustness evaluation of a small student.

    .venv/bin/python benchmarks/eval_speed.py [--domain mnistm] [--backbone lenet]

Uses a fresh temporary cache, so nothing is reused from earlier runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def timed(label: str, action):
    started = time.perf_counter()
    result = action()
    print(f"{label}: {time.perf_counter() - started:.1f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", default="mnistm")
    parser.add_argument("--backbone", default="lenet")
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    os.environ["XDKD_CACHE"] = tempfile.mkdtemp(prefix="xdkd-speed-")

    from benchmark.corruptions import benchmark_names, corruption_names
    from benchmark.data.domains import load_domain
    from benchmark.data.provider import SplitProvider
    from benchmark.models import create_backbone
    from benchmark.run.robustness import robustness_summary
    from benchmark.suite.config import BackboneSpec

    device = torch.device("cpu")
    print(f"{torch.get_num_threads()} threads, domain {args.domain}, {args.images} images")
    timed(f"build domain {args.domain}", lambda: load_domain(args.domain))
    names = corruption_names()
    timed(
        f"generate the corrupted test set ({len(names)} corruptions, all severities)",
        lambda: SplitProvider(device).corrupted(args.domain, 32, args.images, names),
    )
    splits = SplitProvider(device)
    counted = benchmark_names()
    clean, corrupted = timed(
        "load the 15 x 5 cells from the cache",
        lambda: splits.corrupted(args.domain, 32, args.images, counted),
    )
    model = create_backbone(BackboneSpec(name=args.backbone), 10)
    _, metrics = timed(
        f"robustness evaluation of {args.backbone} on {len(corrupted)} cells",
        lambda: robustness_summary(model, clean, corrupted),
    )
    print(f"mCA of an untrained {args.backbone}: {100 * metrics['mca']:.1f}%")


if __name__ == "__main__":
    main()
