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

from benchmark.corruptions import CORRUPTIONS, benchmark_names, corruption_names
from benchmark.corruptions.registry import GROUPS
from benchmark.data.tensors import DeviceSplit
from benchmark.errors import XdkdError
from benchmark.evaluate import accuracy, corruption_accuracy
from benchmark.registry import unknown_name_message


def resolve_corruptions(entries: list[str]) -> list[str]:
    """Group names and corruption names -> corruption names, in registry order, no repeats."""
    names: list[str] = []
    for entry in entries:
        if entry == "benchmark":
            names += benchmark_names()
        elif entry in GROUPS:
            names += corruption_names(entry)
        elif entry in CORRUPTIONS:
            names.append(entry)
        else:
            valid = ["benchmark", *GROUPS, *CORRUPTIONS.names()]
            raise XdkdError(unknown_name_message("corruption or group", entry, valid))
    return list(dict.fromkeys(names))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def robustness_summary(
    network: nn.Module,
    clean: DeviceSplit,
    corrupted: dict[tuple[str, int], DeviceSplit],
    batch_size: int = 512,
) -> tuple[dict[str, object], dict[str, float]]:
    """(the record's `robustness` block, flat metrics: mca and mca_shape where present)."""
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
    block = {
        "images": len(clean),
        "clean_acc": accuracy(network, clean, batch_size),
        "cells": {f"{name}/{severity}": value for (name, severity), value in cells.items()},
        "per_corruption": {name: _mean(v) for name, v in by_corruption.items()},
        "per_group": {group: _mean(v) for group, v in by_group.items()},
        "per_severity": {severity: _mean(v) for severity, v in sorted(by_severity.items())},
    }
    return block, metrics
