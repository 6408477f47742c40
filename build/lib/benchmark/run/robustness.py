"""Robustness of a network on the corrupted copies of its target test set.

The suite names corruptions by group (`benchmark`: the 15 of ImageNet-C that count in the
averages; `noise`, `blur`, `weather`, `digital`, `validation`, `shape`: MNIST-C's digit
corruptions) or by name. The record keeps every (corruption, severity) accuracy and the
summaries: per corruption, per group, per severity, and the mean corruption accuracy (mCA)
over the 15 x 5 benchmark cells. MNIST-C's single-severity corruptions are summarised apart
(`mca_shape`), never mixed into mCA. mCE needs a reference model, so the report computes it.
"""

from __future__ import annotations

from collections import defaultdict

from torch import nn

from benchmark.corruptions import CORRUPTIONS
from benchmark.data.provider import Split
from benchmark.errors import XdkdError
from benchmark.run.evaluate import accuracy, corruption_accuracy


def resolve_corruptions(entries: list[str]) -> list[str]:
    """Group and corruption names -> corruption names (`catalogue.resolve_corruptions`)."""
    from benchmark.corruptions.catalogue import live_corruptions
    from benchmark.suite.catalogue import resolve_corruptions as resolve

    try:
        return resolve(entries, live_corruptions())
    except LookupError as error:
        raise XdkdError(str(error)) from None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def robustness_summary(
    network: nn.Module,
    clean: Split,
    corrupted: dict[tuple[str, int], Split],
    batch_size: int = 512,
) -> tuple[dict[str, object], dict[str, float]]:
    """(the record's robustness block of one target, flat metrics: mca, mca_shape and the
    clean accuracy of the robustness set, named as such: it is a stratified sample of the
    target's test split, not the whole of it)."""
    cells = corruption_accuracy(network, corrupted, batch_size)
    by_corruption: dict[str, list[float]] = defaultdict(list)
    by_group: dict[str, list[float]] = defaultdict(list)
    by_severity: dict[str, list[float]] = defaultdict(list)
    for (name, severity), value in cells.items():
        entry = CORRUPTIONS.get(name)
        by_corruption[name].append(value)
        by_group[entry.group].append(value)
        if entry.counted:
            by_severity[str(severity)].append(value)
    counted = [v for (name, _), v in cells.items() if CORRUPTIONS.get(name).counted]
    shape = by_group.get("shape", [])
    metrics = {}
    if counted:
        metrics["mca"] = _mean(counted)
    if shape:
        metrics["mca_shape"] = _mean(shape)
    clean_subset = accuracy(network, clean, batch_size)
    metrics["clean_subset_acc"] = clean_subset
    block = {
        "images": len(clean),
        "sample": "seeded class-stratified sample of the test split",
        "clean_subset_acc": clean_subset,
        "cells": {f"{name}/{severity}": value for (name, severity), value in cells.items()},
        "per_corruption": {name: _mean(v) for name, v in by_corruption.items()},
        "per_group": {group: _mean(v) for group, v in by_group.items()},
        "per_severity": {severity: _mean(v) for severity, v in sorted(by_severity.items())},
    }
    return block, metrics
