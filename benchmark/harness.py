"""Expand a suite into runs, skip finished ones, share teachers, execute, record.

Teachers depend on (source, backbone, recipe, seed, image size) only, so each is trained
once, saved beside the runs and reused by every student and method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.config import RunRecord, RunSpec, Suite, TeacherSpec
from benchmark.data.domains import domain_info, family_domains, load_domain
from benchmark.data.tensors import DeviceSplit
from benchmark.errors import XdkdError
from benchmark.evaluate import accuracy
from benchmark.methods import METHODS, Method, create_method
from benchmark.methods.source_only import SourceOnly
from benchmark.models import create_backbone
from benchmark.provenance import device_description, provenance
from benchmark.seeding import derive_seed, generator
from benchmark.store import RunStore
from benchmark.train import TrainData, fit, freeze


def expand(suite: Suite) -> list[RunSpec]:
    """pair x teacher x student x method x seed; a method that cannot run under the suite's
    protocol is refused here, before anything trains. Runs sharing a teacher are adjacent."""
    specs: dict[str, RunSpec] = {}
    for method in suite.methods:
        cls = METHODS.get(method.name)
        if suite.protocol not in cls.protocols:
            raise XdkdError(
                f"method '{method.name}' cannot run under protocol '{suite.protocol}' "
                f"(it supports {', '.join(cls.protocols)}); remove it or change the protocol"
            )
    for seed in suite.seeds:
        for pair in suite.pairs:
            for teacher in suite.teachers:
                for method in suite.methods:
                    trains = METHODS.get(method.name).trains_student
                    for student in suite.students if trains else [teacher]:
                        spec = RunSpec(
                            suite=suite.name,
                            pair=pair,
                            teacher=teacher,
                            student=student,
                            method=method,
                            seed=seed,
                            protocol=suite.protocol,
                            image_size=suite.image_size,
                            teacher_recipe=suite.teacher_recipe,
                            student_recipe=suite.student_recipe,
                            teacher_floor=suite.teacher_floor,
                        )
                        specs.setdefault(spec.key, spec)
    return list(specs.values())


@dataclass
class SweepSummary:
    done: list[RunRecord] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)


def run_label(spec: RunSpec) -> str:
    return f"{spec.method.name} {spec.student.name} {spec.pair.label} seed {spec.seed}"


class Harness:
    def __init__(self, store: RunStore, device: torch.device, eval_batch_size: int = 512):
        self.store = store
        self.device = device
        self.eval_batch_size = eval_batch_size
        self._splits: dict[tuple[str, str, int], DeviceSplit] = {}
        self._teachers: dict[str, tuple[nn.Module, dict] | Exception] = {}

    # --- data -------------------------------------------------------------------------

    def split(self, domain: str, part: str, size: int) -> DeviceSplit:
        key = (domain, part, size)
        if key not in self._splits:
            arrays = load_domain(domain)
            images, labels = (
                (arrays.train_images, arrays.train_labels)
                if part == "train"
                else (arrays.test_images, arrays.test_labels)
            )
            self._splits[key] = DeviceSplit.from_numpy(images, labels, self.device, size)
        return self._splits[key]

    def accuracy(self, model: nn.Module, domain: str, size: int) -> float:
        return accuracy(model, self.split(domain, "test", size), self.eval_batch_size)

    # --- teachers ---------------------------------------------------------------------

    def teacher(self, spec: TeacherSpec) -> tuple[nn.Module, dict]:
        """The cached teacher for this spec, trained here if it is not on disk yet."""
        if spec.key not in self._teachers:
            try:
                self._teachers[spec.key] = self._load_or_train_teacher(spec)
            except Exception as error:  # every run sharing this teacher fails with the reason
                self._teachers[spec.key] = error
        cached = self._teachers[spec.key]
        if isinstance(cached, Exception):
            raise cached
        return cached

    def _load_or_train_teacher(self, spec: TeacherSpec) -> tuple[nn.Module, dict]:
        num_classes = domain_info(spec.source).num_classes
        torch.manual_seed(derive_seed(spec.seed, "teacher-init", spec.backbone.name))
        model = create_backbone(spec.backbone, num_classes).to(self.device)
        saved = self.store.load_teacher(spec)
        if saved is not None:
            model.load_state_dict(saved[0])
            return freeze(model), saved[1]
        started = time.perf_counter()
        data = TrainData(self.split(spec.source, "train", spec.image_size), None, False)
        fit(
            model,
            None,
            SourceOnly("source_only"),
            data,
            spec.recipe,
            generator(spec.seed, self.device, "teacher", spec.source, spec.backbone.name),
            label=f"teacher {spec.backbone.name} on {spec.source}",
        )
        info = {
            "key": spec.key,
            "source_accuracy": self.accuracy(model, spec.source, spec.image_size),
            "train_wall_time_s": time.perf_counter() - started,
            "params": sum(p.numel() for p in model.parameters()),
            "device": device_description(self.device),
        }
        self.store.save_teacher(spec, {k: v.cpu() for k, v in model.state_dict().items()}, info)
        return freeze(model), info

    # --- runs -------------------------------------------------------------------------

    def run_one(self, spec: RunSpec) -> RunRecord:
        teacher, teacher_info = self.teacher(spec.teacher_spec)
        started = time.perf_counter()
        method = create_method(spec.method).to(self.device)
        if method.trains_student:
            network = self._train_student(spec, teacher if method.uses_teacher else None, method)
            train_time = time.perf_counter() - started
        else:
            network, train_time = teacher, teacher_info["train_wall_time_s"]
        size = spec.image_size
        family = family_domains(domain_info(spec.pair.target).family)
        per_domain = {domain: self.accuracy(network, domain, size) for domain in family}
        held_out = [d for d in family if d not in (spec.pair.source, spec.pair.target)]
        teacher_target = self.accuracy(teacher, spec.pair.target, size)
        metrics = {
            "target_acc": per_domain[spec.pair.target],
            "source_acc": per_domain[spec.pair.source],
            "heldout_mean_acc": (
                sum(per_domain[d] for d in held_out) / len(held_out) if held_out else float("nan")
            ),
            "teacher_target_acc": teacher_target,
            "knowledge_recovery": per_domain[spec.pair.target] / max(teacher_target, 1e-12),
            "params": float(sum(p.numel() for p in network.parameters())),
            "train_wall_time_s": train_time,
        }
        teacher_summary = {
            "key": teacher_info["key"],
            "source_accuracy": teacher_info["source_accuracy"],
            "below_floor": teacher_info["source_accuracy"] < spec.teacher_floor,
            "floor": spec.teacher_floor,
            "train_wall_time_s": teacher_info["train_wall_time_s"],
        }
        return RunRecord(
            key=spec.key,
            spec=spec,
            metrics=metrics,
            teacher=teacher_summary,
            per_domain=per_domain,
            wall_time_s=time.perf_counter() - started,
            device=device_description(self.device),
            provenance=provenance(),
        )

    def _train_student(
        self, spec: RunSpec, teacher: nn.Module | None, method: Method
    ) -> nn.Module:
        num_classes = domain_info(spec.pair.target).num_classes
        torch.manual_seed(derive_seed(spec.seed, "student-init", spec.student.name))
        student = create_backbone(spec.student, num_classes).to(self.device)
        size = spec.image_size
        target = (
            None if spec.protocol == "zero_shot" else self.split(spec.pair.target, "train", size)
        )
        data = TrainData(
            self.split(spec.pair.source, "train", size),
            target,
            target_labelled=spec.protocol == "labelled_target" or method.needs_target_labels,
        )
        torch.manual_seed(derive_seed(spec.seed, "student-train", spec.key))
        fit(
            student,
            teacher,
            method,
            data,
            spec.student_recipe,
            generator(spec.seed, self.device, "student", spec.key),
            label=run_label(spec),
        )
        return student

    def run(self, specs: list[RunSpec], progress: bool = True) -> SweepSummary:
        """Run every spec without a record; a failure is recorded and the sweep goes on."""
        summary = SweepSummary()
        todo = [spec for spec in specs if not self.store.has_record(spec)]
        summary.skipped = len(specs) - len(todo)
        bar = tqdm(todo, desc="suite", unit="run", disable=not progress)
        for spec in bar:
            bar.set_postfix_str(run_label(spec))
            try:
                record = self.run_one(spec)
            except KeyboardInterrupt:
                raise
            except Exception as error:
                self.store.write_error(spec, error)
                summary.failed.append((spec, f"{type(error).__name__}: {error}"))
                tqdm.write(f"FAILED {run_label(spec)}: {error}")
                continue
            self.store.write_record(record)
            summary.done.append(record)
            tqdm.write(
                f"done {run_label(spec)}: target {100 * record.metrics['target_acc']:.1f}% "
                f"({record.wall_time_s:.0f} s)"
            )
        return summary
