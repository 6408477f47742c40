"""Expand a suite into runs, and run one of them: train, evaluate, build its record.

Teachers depend on (source, backbone, recipe, seed, image size, validation share) only, so
each is trained once, saved beside the runs and reused by every student and method; a lock
on the teacher's directory makes sure that, across every process sharing the store, one
trains it and the others wait and load it. Which runs execute where is the executors' job
(`benchmark.executors`).
"""

from __future__ import annotations

import copy
import resource
import time

import torch
from torch import nn

from benchmark.config import RunRecord, RunSpec, Suite, TeacherSpec
from benchmark.cost import model_cost
from benchmark.data.domains import domain_info
from benchmark.data.provider import SplitProvider
from benchmark.errors import XdkdError
from benchmark.evaluate import accuracy, domain_metrics
from benchmark.locks import file_lock
from benchmark.methods import METHODS, create_method
from benchmark.models import create_backbone
from benchmark.provenance import device_description, provenance
from benchmark.robustness import resolve_corruptions, robustness_summary
from benchmark.store import RunStore
from benchmark.train import FitResult, freeze, train_student, train_teacher


def method_protocols(suite: Suite) -> tuple[dict[str, list[str]], list[str]]:
    """For each method, the suite's protocols it can run under, and a note for each it
    cannot; a method that fits none of them is refused here, before anything trains."""
    runnable: dict[str, list[str]] = {}
    notes: list[str] = []
    for method in suite.methods:
        supported = METHODS.get(method.name).protocols
        wanted = [method.protocol] if method.protocol else suite.protocol
        runnable[method.name] = [p for p in wanted if p in supported]
        if not runnable[method.name]:
            raise XdkdError(
                f"method '{method.name}' cannot run under protocol '{', '.join(wanted)}' "
                f"(it supports {', '.join(supported)}); remove it, add one of those "
                "protocols to the suite, or give the method its own: {name: ..., protocol: ...}"
            )
        notes += [
            f"method '{method.name}' skipped under protocol '{p}' (it supports "
            f"{', '.join(supported)})"
            for p in wanted
            if p not in supported
        ]
    return runnable, notes


def expand(suite: Suite) -> list[RunSpec]:
    """pair x teacher x student x method x protocol x seed. Runs sharing a teacher are
    adjacent; the teacher row and teacher-architecture methods get the teacher as student."""
    runnable, _ = method_protocols(suite)
    specs: dict[str, RunSpec] = {}
    for seed in suite.seeds:
        for pair in suite.pairs:
            for teacher in suite.teachers:
                for method in suite.methods:
                    cls = METHODS.get(method.name)
                    own = not cls.trains_student or cls.student_is_teacher_architecture
                    for protocol in runnable[method.name]:
                        for student in [teacher] if own else suite.students:
                            spec = RunSpec(
                                suite=suite.name,
                                pair=pair,
                                teacher=teacher,
                                student=student,
                                method=method.model_copy(update={"protocol": None}),
                                seed=seed,
                                protocol=protocol,
                                image_size=suite.image_size,
                                source_validation=suite.source_validation,
                                corruptions=suite.corruptions,
                                corruption_images=suite.corruption_images,
                                teacher_recipe=suite.teacher_recipe,
                                student_recipe=suite.student_recipe,
                                teacher_floor=suite.teacher_floor,
                            )
                            specs.setdefault(spec.key, spec)
    return list(specs.values())


class TeacherFailed(Exception):
    """The run's teacher could not be trained; its reason is in the teacher's error.json."""


def run_label(spec: RunSpec) -> str:
    return f"{spec.method.name} {spec.student.name} {spec.pair.label} seed {spec.seed}"


def peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak memory in MB and what it measures: CUDA allocations, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "peak CUDA memory allocated"
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024, "peak resident memory of the whole process (CPU)"


class Harness:
    def __init__(
        self,
        store: RunStore,
        device: torch.device,
        eval_batch_size: int = 512,
        progress: bool = True,
    ) -> None:
        self.store = store
        self.progress = progress
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.splits = SplitProvider(device)
        self._teachers: dict[str, tuple[nn.Module, dict] | Exception] = {}

    def teacher(self, spec: TeacherSpec, retry_failed: bool = False) -> tuple[nn.Module, dict]:
        """The teacher for this spec, loaded from the store or trained here. A teacher that
        failed before fails again at once with its recorded reason, unless `retry_failed`."""
        if spec.key not in self._teachers or retry_failed:
            try:
                self._teachers[spec.key] = self._load_or_train_teacher(spec, retry_failed)
            except Exception as error:  # every run sharing this teacher fails with the reason
                self._teachers[spec.key] = error
        cached = self._teachers[spec.key]
        if isinstance(cached, Exception):
            raise cached
        return cached

    def _load_or_train_teacher(
        self, spec: TeacherSpec, retry_failed: bool
    ) -> tuple[nn.Module, dict]:
        """Under the teacher's lock, so that one process trains it and the others wait
        and load it."""
        with file_lock(self.store.teacher_lock(spec)):
            saved = self.store.load_teacher(spec)
            if saved is not None:
                model = create_backbone(spec.backbone, domain_info(spec.source).num_classes)
                model.load_state_dict(saved[0])
                return freeze(model.to(self.device)), saved[1]
            recorded = self.store.teacher_error(spec)
            if recorded and not retry_failed:
                raise TeacherFailed(f"teacher {spec.key} failed: {recorded}")
            try:
                return self._train_teacher(spec)
            except Exception as error:
                self.store.write_teacher_error(spec, error)
                raise

    def _train_teacher(self, spec: TeacherSpec) -> tuple[nn.Module, dict]:
        started = time.perf_counter()
        model, _ = train_teacher(spec, self.splits, self.device, self.progress)
        test = self.splits.split(spec.source, "test", spec.image_size)
        info = {
            "key": spec.key,
            "source_accuracy": accuracy(model, test, self.eval_batch_size),
            "train_wall_time_s": time.perf_counter() - started,
            "params": sum(p.numel() for p in model.parameters()),
            "device": device_description(self.device),
        }
        self.store.save_teacher(spec, {k: v.cpu() for k, v in model.state_dict().items()}, info)
        return freeze(model), info

    def run_one(self, spec: RunSpec) -> RunRecord:
        teacher, teacher_info = self.teacher(spec.teacher_spec)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        method = create_method(spec.method).to(self.device)
        fitted: FitResult | None = None
        if method.trains_student:
            network, fitted = train_student(
                spec,
                teacher if method.uses_teacher else None,
                method,
                self.splits,
                self.device,
                self.progress,
            )
            train_time = time.perf_counter() - started
        else:
            network, train_time = teacher, teacher_info["train_wall_time_s"]
        memory_mb, memory_kind = peak_memory(self.device)
        metrics, per_domain = domain_metrics(network, spec, self.splits, self.eval_batch_size)
        target_test = self.splits.split(spec.pair.target, "test", spec.image_size)
        teacher_target = accuracy(teacher, target_test, self.eval_batch_size)
        metrics |= {
            "teacher_target_acc": teacher_target,
            "knowledge_recovery": metrics["target_acc"] / max(teacher_target, 1e-12),
            "train_wall_time_s": train_time,
            "peak_memory_mb": memory_mb,
            **model_cost(network, spec.image_size, self.device),
        }
        robustness: dict[str, object] = {}
        if spec.corruptions and spec.corruption_images:
            clean, corrupted = self.splits.corrupted(
                spec.pair.target,
                spec.image_size,
                spec.corruption_images,
                resolve_corruptions(spec.corruptions),
            )
            robustness, robust_metrics = robustness_summary(
                network, clean, corrupted, self.eval_batch_size
            )
            metrics |= robust_metrics
        return RunRecord(
            key=spec.key,
            spec=spec,
            metrics=metrics,
            robustness=robustness,
            selected=self._selected_metrics(network, fitted, spec),
            teacher={
                "key": teacher_info["key"],
                "source_accuracy": teacher_info["source_accuracy"],
                "below_floor": teacher_info["source_accuracy"] < spec.teacher_floor,
                "floor": spec.teacher_floor,
                "train_wall_time_s": teacher_info["train_wall_time_s"],
            },
            per_domain=per_domain,
            notes={"peak_memory_mb": memory_kind},
            wall_time_s=time.perf_counter() - started,
            device=device_description(self.device),
            provenance=provenance(),
        )

    def _selected_metrics(
        self, network: nn.Module, fitted: FitResult | None, spec: RunSpec
    ) -> dict[str, float] | None:
        """The same clean metrics for the epoch with the best source-validation accuracy."""
        if fitted is None or fitted.best_state is None:
            return None
        selected = copy.deepcopy(network)
        selected.load_state_dict(fitted.best_state)
        metrics, _ = domain_metrics(selected, spec, self.splits, self.eval_batch_size)
        return {
            "epoch": float(fitted.best_epoch + 1),
            "source_val_acc": fitted.validation_accuracy[fitted.best_epoch],
            **metrics,
        }
