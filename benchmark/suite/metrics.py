"""Metric formulas for corruption robustness (mCA, mCE, relative mCE), torch-free.

Robustness follows Hendrycks & Dietterich (ICLR 2019): with E the top-1 error,
CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}, relative CE_c = sum_s (E_{s,c} - E_clean) /
sum_s (E^ref_{s,c} - E^ref_clean), mCE and relative mCE their means over corruptions; the
reference outside ImageNet-C is an in-suite model, named wherever the numbers appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from benchmark.suite.specs import RunRecord

Cells = Mapping[tuple[str, int], float]  # (corruption, severity) -> accuracy
# Relative CE divides by the reference's degradation, summed over severities; where the
# reference barely degrades (under 5 points in all) the ratio is noise, so it is undefined.
MIN_REFERENCE_DEGRADATION = 0.05


def corruption_errors(
    cells: Cells, clean: float, reference: Cells, reference_clean: float
) -> dict[str, dict[str, float]]:
    """Per corruption: CE and relative CE against the reference model; relative CE is NaN
    where the reference degrades by less than MIN_REFERENCE_DEGRADATION in all."""
    out: dict[str, dict[str, float]] = {}
    for corruption in sorted({name for name, _ in cells}):
        severities = sorted(s for name, s in cells if name == corruption)
        error = [1 - cells[(corruption, s)] for s in severities]
        ref_error = [1 - reference[(corruption, s)] for s in severities]
        rel_ref = sum(e - (1 - reference_clean) for e in ref_error)
        out[corruption] = {
            "ce": sum(error) / sum(ref_error) if sum(ref_error) else float("nan"),
            "relative_ce": (
                sum(e - (1 - clean) for e in error) / rel_ref
                if rel_ref >= MIN_REFERENCE_DEGRADATION
                else float("nan")
            ),
        }
    return out


def mean_corruption_accuracy(cells: Cells) -> float:
    return sum(cells.values()) / len(cells)


# --- the metrics registry ------------------------------------------------------------------


CHANCE_POINTS = 0.05  # an accuracy under 1 / classes + CHANCE_POINTS counts as chance


def chance_bound(classes: int) -> float:
    """The accuracy under which a run counts as at chance: 5 points above guessing (15% of
    10 classes, as 1.5 / classes was; 55% of 2, where 1.5 / classes would call 74% chance)."""
    return 1 / max(1, classes) + CHANCE_POINTS


@dataclass(frozen=True)
class Metric:
    """A metric, declared once: records, leaderboards, plots and `xdkd check` read this.

    scale: shown value = stored value x scale (fractions to %, parameters to millions);
    better: "max", "min", or None for a property that is no score; selection: whether a
    model-selection rule changes it (clean metrics of the chosen epoch do; robustness and
    cost are the last epoch's)."""

    name: str
    label: str
    unit: str
    scale: float
    better: Literal["max", "min"] | None
    selection: bool
    caption: str

    def shown(self, value: float) -> float:
        return value * self.scale


_metrics = [
    Metric("target_acc", "target", "%", 100, "max", True, "target-domain top-1 accuracy (%)"),
    Metric(
        "target_ece",
        "ECE",
        "%",
        100,
        "min",
        True,
        "expected calibration error on the target (%, 15 bins)",
    ),
    Metric("target_nll", "NLL", "nats", 1, "min", True, "negative log-likelihood on the target"),
    Metric("source_acc", "source", "%", 100, "max", True, "source-domain top-1 accuracy (%)"),
    Metric(
        "heldout_mean_acc",
        "held-out",
        "%",
        100,
        "max",
        True,
        "mean accuracy on the family's domains that are neither source nor target (%)",
    ),
    Metric(
        "teacher_target_acc",
        "teacher target",
        "%",
        100,
        None,
        False,
        "the teachers' (ensemble's) target accuracy (%)",
    ),
    Metric(
        "knowledge_recovery",
        "recovery",
        "%",
        100,
        "max",
        True,
        "student target accuracy / teacher target accuracy (%)",
    ),
    Metric(
        "teacher_agreement",
        "agreement",
        "%",
        100,
        None,
        True,
        "top-1 agreement of the student with its teachers' ensemble on the target (%; "
        "fidelity, Stanton et al. 2021)",
    ),
    Metric(
        "teacher_kl",
        "KL(T||S)",
        "nats",
        1,
        None,
        True,
        "KL(teacher || student) of their softmax outputs on the target, mean over images "
        "(fidelity, Stanton et al. 2021)",
    ),
    Metric(
        "mca",
        "mCA",
        "%",
        100,
        "max",
        False,
        "mean accuracy over the corrupted target robustness set, every severity of the "
        "suite's ImageNet-C corruptions (%)",
    ),
    Metric(
        "mca_shape",
        "mCA shape",
        "%",
        100,
        "max",
        False,
        "mean accuracy over MNIST-C's shape corruptions (%)",
    ),
    Metric(
        "clean_subset_acc",
        "clean subset",
        "%",
        100,
        "max",
        False,
        "accuracy on the uncorrupted robustness set (%)",
    ),
    Metric("mce", "mCE", "%", 1, "min", False, "mean corruption error against the reference (%)"),
    Metric(
        "relative_mce",
        "rel. mCE",
        "%",
        1,
        "min",
        False,
        "relative mean corruption error against the in-suite reference (%, 100 = as robust)",
    ),
    Metric(
        "eff_robustness",
        "eff. robustness",
        "%",
        100,
        "max",
        False,
        "mCA above the baseline fit at the run's clean accuracy (Taori et al. 2020; points)",
    ),
    Metric("params", "params (M)", "M", 1e-6, None, False, "student parameters (millions)"),
    Metric(
        "method_params",
        "method params (M)",
        "M",
        1e-6,
        None,
        False,
        "trainable parameters of the method's own parts (millions)",
    ),
    Metric("flops", "GFLOPs", "G", 1e-9, "min", False, "FLOPs of one forward pass (billions)"),
    Metric("latency_ms_b1", "latency b1 (ms)", "ms", 1, "min", False, "latency at batch 1 (ms)"),
    Metric(
        "latency_ms_b256", "latency b256 (ms)", "ms", 1, "min", False, "latency at batch 256 (ms)"
    ),
    Metric("train_wall_time_s", "train time (s)", "s", 1, "min", False, "training wall time (s)"),
    Metric("peak_memory_mb", "peak memory (MB)", "MB", 1, "min", False, "peak memory (MB)"),
]
METRICS: dict[str, Metric] = {metric.name: metric for metric in _metrics}
# measurements of the machine a run had, not results of its spec: they differ between two
# runs of the same spec, which agree on every other metric
MEASURED = frozenset({"latency_ms_b1", "latency_ms_b256", "train_wall_time_s", "peak_memory_mb"})


def same_results(a: RunRecord, b: RunRecord) -> bool:
    """Whether two records of one spec agree number for number: curves, selections, every
    per-domain, per-class and robustness figure, and every metric but the MEASURED ones."""
    results = set(a.metrics) - MEASURED
    return (
        a.key == b.key
        and a.curves == b.curves
        and a.selections == b.selections
        and a.selected == b.selected
        and a.per_domain == b.per_domain
        and a.per_class == b.per_class
        and a.robustness.get("items") == b.robustness.get("items")
        and {m: a.metrics[m] for m in results} == {m: b.metrics.get(m) for m in results}
    )


def metric(name: str) -> Metric:
    """The declaration of a metric; `target_acc/mnistm` (one target, task or domain of a
    run with several) is its base metric under another label."""
    base, _, qualifier = name.partition("/")
    if base not in METRICS:
        from benchmark.registry import unknown_name_message

        raise KeyError(unknown_name_message("metric", name, list(METRICS)))
    declared = METRICS[base]
    if not qualifier:
        return declared
    return Metric(
        name,
        qualifier,
        declared.unit,
        declared.scale,
        declared.better,
        declared.selection,
        f"{declared.caption}, {qualifier}",
    )
