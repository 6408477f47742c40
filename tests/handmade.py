"""Records made by hand for the reporting and checking tests: every number is chosen, so every
number in a table can be checked by hand."""

from __future__ import annotations

from benchmark.suite.config import EvalSpec, Recipe, Suite
from benchmark.suite.expansion import expand
from benchmark.suite.specs import RunRecord, RunSpec

CLEAN = ("target_acc", "target_ece", "target_nll", "source_acc", "heldout_mean_acc")


def make_spec(
    method: str,
    seed: int = 0,
    pair: tuple[str, str] = ("mnist", "mnistm"),
    student: str = "lenet",
    epochs: int = 8,
    protocol: str = "uda",
) -> RunSpec:
    suite = Suite(
        name="handmade",
        pairs=[{"source": pair[0], "target": pair[1]}],
        teachers=["resnet18"],
        students=[student],
        methods=[method],
        seeds=[seed],
        protocol=[protocol],
        student_recipe=Recipe(epochs=epochs),
    )
    (spec,) = expand(suite)  # the teacher row gets the teacher as its student
    return spec


def make_record(
    spec: RunSpec,
    metrics: dict[str, float],
    selected: dict[str, dict[str, float]] | None = None,
    cells: dict[str, float] | None = None,
    below_floor: bool = False,
) -> RunRecord:
    """A record with `metrics` for the last epoch; unless `selected` says otherwise, the
    source-validation rule chose the last epoch (epoch 8) too."""
    epochs = spec.student_recipe.epochs
    clean = {k: v for k, v in metrics.items() if k in CLEAN}
    chosen = {"source-val": {"epoch": float(epochs), **clean}} if selected is None else selected
    robustness = (
        {
            "items": {
                spec.setting.targets[0]: {"cells": cells, "clean_subset_acc": metrics["target_acc"]}
            }
        }
        if cells
        else {}
    )
    return RunRecord(
        key=spec.key,
        spec=spec,
        evaluation=EvalSpec(),
        evaluation_key=EvalSpec().key,
        saw={"sources": spec.setting.sources, "targets": spec.setting.targets},
        teachers=[
            {
                "name": spec.setting.sources[0],
                "key": "t" * 16,
                "source_accuracy": 0.6 if below_floor else 0.95,
                "below_floor": below_floor,
                "floor": 0.7,
            }
        ],
        selections={rule: int(v["epoch"]) for rule, v in chosen.items()},
        metrics=metrics,
        selected=chosen,
        robustness=robustness,
        per_domain={},
        wall_time_s=1.0,
        device="cpu",
        provenance={"code": "test"},
    )
