"""Evaluation of a trained run: its saved student (or, for the `teacher` row, its teachers'
ensemble) under an `EvalSpec`, into a record. Training is never repeated here, so a new
corruption, held-out list or floor is applied to finished runs by evaluating again.

Per scored item (each target, or each task) the record gets target accuracy, ECE and NLL
(`target_acc/<item>`, their means as `target_acc` ... when there are several), source
accuracy, accuracy on every held-out domain, the teachers' accuracy and knowledge recovery,
robustness on the item's stratified robustness set, and cost. For every selection rule's
epoch the clean metrics again (`selected`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.data.provider import Split, SplitProvider
from benchmark.data.setting import Part, RunSplits
from benchmark.data.tensors import normalize
from benchmark.methods.teachers import EnsembleNetwork, Member
from benchmark.models import input_normalisation
from benchmark.provenance import device_description, provenance
from benchmark.run.cost import model_cost
from benchmark.run.evaluate import accuracy, fidelity, per_class_accuracy, predict, scores
from benchmark.run.fastpath import FastPath
from benchmark.run.robustness import resolve_corruptions, robustness_summary
from benchmark.suite.config import EvalSpec
from benchmark.suite.specs import RunRecord, RunSpec

# the clean metrics a selection rule's epoch has of its own (knowledge recovery is added)
CLEAN_PREFIXES = ("target_", "source_", "heldout_", "teacher_agreement", "teacher_kl")
Adapt = Callable[[nn.Module, Part], nn.Module]  # (student, scored part) -> adapted student


def support_images(split: Split, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` unlabelled images of a split (a seeded draw without replacement, all of it
    when it holds fewer), normalised as training normalises them: a test-time adaptation's
    support set."""
    rows = torch.randperm(len(split), generator=generator, device=generator.device)[:count]
    images, _ = next(iter(split.take(rows, len(rows))))
    return normalize(images)


@dataclass
class TrainedTeacher:
    """A run's teacher as evaluation needs it: the member and its recorded info."""

    member: Member
    info: dict


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _named_means(
    per_item: dict[str, dict[str, float]],
    prefix: str,
    keys: tuple[str, ...] = ("acc", "ece", "nll"),
) -> dict[str, float]:
    """{prefix_acc: mean, prefix_acc/item: value, ...} (per item only when there are several)."""
    out: dict[str, float] = {}
    for key in keys:
        values = {name: m[key] for name, m in per_item.items() if key in m}
        if not values:
            continue
        out[f"{prefix}_{key}"] = _mean(list(values.values()))
        if len(values) > 1:
            out |= {f"{prefix}_{key}/{name}": v for name, v in values.items()}
    return out


def _on(network: nn.Module, part: Part, adapt: Adapt | None) -> nn.Module:
    """The network that scores `part`: itself, or adapted to the part's domain."""
    return network if adapt is None else adapt(network, part)


@dataclass
class CleanBlock:
    """One network's clean numbers: metrics, accuracy per domain or task, and per scored item
    the accuracy of each class and the logits."""

    metrics: dict[str, float]
    per_domain: dict[str, float]
    per_class: dict[str, dict[str, float]]
    logits: dict[str, torch.Tensor]


def clean_block(
    network: nn.Module,
    splits: RunSplits,
    evaluation: EvalSpec,
    batch_size: int,
    adapt: Adapt | None = None,
    teacher_logits: dict[str, torch.Tensor] | None = None,
) -> CleanBlock:
    """The clean numbers of one network (with `adapt`: adapted to each domain before it is
    scored there); with the teachers' logits on each scored item, its fidelity to them
    (`teacher_agreement`, `teacher_kl`)."""
    predicted = {
        p.name: predict(_on(network, p, adapt), p.split, batch_size) for p in splits.scored_test()
    }
    scored = {name: scores(logits, labels) for name, (logits, labels) in predicted.items()}
    per_class = {
        name: per_class_accuracy(logits, labels, splits.classes)
        for name, (logits, labels) in predicted.items()
    }
    sources = {
        p.name: {"acc": accuracy(_on(network, p, adapt), p.split, batch_size)}
        for p in splits.source_test()
    }
    heldout = {
        p.name: accuracy(_on(network, p, adapt), p.split, batch_size)
        for p in splits.heldout_test(evaluation.heldout)
    }
    metrics = _named_means(scored, "target") | _named_means(sources, "source")
    if teacher_logits:
        faithful = {
            name: fidelity(logits, teacher_logits[name]) for name, (logits, _) in predicted.items()
        }
        metrics |= _named_means(faithful, "teacher", ("agreement", "kl"))
    if heldout:
        metrics["heldout_mean_acc"] = _mean(list(heldout.values()))
    per_domain = {name: m["acc"] for name, m in scored.items()}
    per_domain |= {name: m["acc"] for name, m in sources.items()} | heldout
    logits = {name: logits for name, (logits, _) in predicted.items()}
    return CleanBlock(metrics, per_domain, per_class, logits)


def robustness_block(
    network: nn.Module,
    splits: RunSplits,
    provider: SplitProvider,
    evaluation: EvalSpec,
    batch_size: int,
    adapt: Adapt | None = None,
) -> tuple[dict, dict[str, float]]:
    """Robustness on each scored item's robustness set: blocks per item, metrics averaged
    (with `adapt`: the network adapted to the item's clean domain scores its corruptions)."""
    if not (evaluation.corruptions and evaluation.corruption_images):
        return {}, {}
    names = resolve_corruptions(evaluation.corruptions)
    blocks, flat = {}, {}
    for item, part in zip(splits.items(), splits.scored_test(), strict=True):
        keep, labels = splits.robustness_labels(item)
        clean, corrupted = provider.corrupted(
            item[1], splits.size, evaluation.corruption_images, names, keep, labels
        )
        scoring = _on(network, part, adapt)
        blocks[item[0]], flat[item[0]] = robustness_summary(scoring, clean, corrupted, batch_size)
    metrics = {}
    for key in sorted({k for values in flat.values() for k in values}):
        values = {name: v[key] for name, v in flat.items() if key in v}
        metrics[key] = _mean(list(values.values()))
        if len(values) > 1:
            metrics |= {f"{key}/{name}": v for name, v in values.items()}
    return {"items": blocks}, metrics


def teacher_target_accuracy(member: Member, splits: RunSplits, batch_size: int) -> float:
    """A teacher's accuracy on the scored items it knows (a task teacher: its own task), its
    predictions read in the student's numbering."""
    accuracies = []
    for part in splits.scored_test():
        if member.columns is not None and part.name != member.name:
            continue
        logits, labels = predict(member.model, part.split, batch_size)
        predicted = logits.argmax(1)
        if member.columns is not None:
            predicted = torch.tensor(member.columns, device=predicted.device)[predicted]
        accuracies.append(float((predicted == labels).float().mean()))
    return _mean(accuracies)


def teacher_rows(
    teachers: list[TrainedTeacher], splits: RunSplits, floor: float, batch_size: int
) -> list[dict]:
    """What the record says of each teacher: key, in-domain accuracy against the floor, and
    its accuracy on the items it knows."""
    rows = []
    for teacher in teachers:
        info = teacher.info
        rows.append(
            {
                "name": teacher.member.name,
                "key": info["key"],
                "sources": info["sources"],
                "classes": info.get("classes"),
                "source_accuracy": info["source_accuracy"],
                "target_accuracy": teacher_target_accuracy(teacher.member, splits, batch_size),
                "below_floor": info["source_accuracy"] < floor,
                "floor": floor,
                "train_wall_time_s": info["train_wall_time_s"],
                "params": info["params"],
                "inputs": input_normalisation(teacher.member.model),
            }
        )
    return rows


def evaluate_run(
    spec: RunSpec,
    evaluation: EvalSpec,
    network: nn.Module,
    training: dict | None,
    states: dict[int, dict[str, torch.Tensor]],
    teachers: list[TrainedTeacher],
    provider: SplitProvider,
    device: torch.device,
    fast: FastPath,
    batch_size: int = 512,
    teacher_cache: dict | None = None,
    adapt: Adapt | None = None,
) -> RunRecord:
    """The record of a run whose training is done: `network` holds the last epoch's weights
    (the teachers' ensemble for the teacher row), `states` the weights of the epochs the
    selection rules chose. `teacher_cache` keeps the teachers' clean metrics and rows between
    the runs of one process (every method of a setting shares its teachers). With no
    teachers and no `training` (a model trained elsewhere, `benchmark.run.external`) the record
    has no teacher metrics or rows, no knowledge recovery and no training time. `adapt`: a
    method's test-time adaptation, applied before every domain is scored (its budget is in
    the record's training block)."""
    started = time.perf_counter()
    splits = RunSplits(provider, spec)
    teacher_acc, rows = None, []  # no teachers: a model trained elsewhere (evaluate-model)
    teacher_logits = None  # the ensemble's on each scored item, for the student's fidelity
    own = None  # the teacher row's clean block, when computing the cache computed it
    if teachers:
        cache = {} if teacher_cache is None else teacher_cache
        cache_key = (
            tuple(t.info["key"] for t in teachers),
            spec.setting.model_dump_json(),
            spec.image_size,
            evaluation.key,
        )
        if cache_key not in cache:
            if isinstance(network, EnsembleNetwork):  # the teacher row: it is the ensemble
                ensemble, own = network, clean_block(network, splits, evaluation, batch_size)
            else:
                members = [t.member for t in teachers]
                ensemble = EnsembleNetwork(members, len(splits.classes)).to(device).eval()
            ensemble_block = own or clean_block(ensemble, splits, evaluation, batch_size)
            ensemble_metrics, logits = ensemble_block.metrics, ensemble_block.logits
            rows = teacher_rows(teachers, splits, evaluation.teacher_floor, batch_size)
            cache[cache_key] = (ensemble_metrics, rows, logits)
        teacher_metrics, rows, teacher_logits = cache[cache_key]
        teacher_acc = teacher_metrics["target_acc"]
        if isinstance(network, EnsembleNetwork):  # the teacher row: no fidelity to itself
            teacher_logits = None
    block = own or clean_block(network, splits, evaluation, batch_size, adapt, teacher_logits)
    metrics, per_domain = block.metrics, block.per_domain
    if teachers:
        metrics["teacher_target_acc"] = teacher_acc
        metrics["knowledge_recovery"] = metrics["target_acc"] / max(teacher_acc, 1e-12)
    robustness, robust_metrics = robustness_block(
        network, splits, provider, evaluation, batch_size, adapt
    )
    metrics |= robust_metrics | model_cost(network, spec.image_size, device)
    if training is not None:
        metrics["train_wall_time_s"] = training["train_wall_time_s"]
        metrics["method_params"] = float(training["method_params"])
        metrics["peak_memory_mb"] = training["peak_memory_mb"]
    elif teachers:  # the teacher row: its training is the teachers'
        metrics["train_wall_time_s"] = sum(t.info["train_wall_time_s"] for t in teachers)
    selected = {}
    selections = (training or {}).get("selections", {})
    last = training["epochs"] if training else None
    for rule, epoch in selections.items():
        if epoch == last:
            clean = {k: v for k, v in metrics.items() if k.startswith(CLEAN_PREFIXES)}
            clean.pop("teacher_target_acc", None)
        else:
            chosen = _copy_with(network, states[epoch])
            clean = clean_block(chosen, splits, evaluation, batch_size, adapt, teacher_logits)
            clean = clean.metrics
        if teacher_acc is not None:
            clean["knowledge_recovery"] = clean["target_acc"] / max(teacher_acc, 1e-12)
        selected[rule] = {"epoch": float(epoch), **clean}
    record_training = dict(training or {})
    record_training.pop("weights", None)
    record_training.pop("key", None)
    curves = record_training.pop("curves", {})
    saw = record_training.pop("saw", None) or splits.saw(oracle=False)
    record_training.pop("selections", None)
    record_training.pop("notes", None)
    evaluation_seconds = time.perf_counter() - started
    return RunRecord(
        key=spec.key,
        spec=spec,
        evaluation=evaluation,
        evaluation_key=evaluation.key,
        saw={**saw, "teachers": [t.info["key"] for t in teachers]},
        teachers=rows,
        curves=curves,
        selections=selections,
        metrics={k: v for k, v in metrics.items() if not math.isnan(v)},
        selected={
            rule: {k: v for k, v in values.items() if not math.isnan(v)}
            for rule, values in selected.items()
        },
        robustness=robustness,
        per_domain=per_domain,
        per_class=block.per_class,
        training={**record_training, "evaluation_wall_time_s": evaluation_seconds},
        notes=(training or {}).get("notes", {}),
        wall_time_s=metrics.get("train_wall_time_s", 0.0) + evaluation_seconds,
        device=device_description(device),
        fast_path=fast.settings(),
        provenance=provenance(),
    )


def _copy_with(network: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    import copy

    chosen = copy.deepcopy(network)
    chosen.load_state_dict(state)
    return chosen.eval()
