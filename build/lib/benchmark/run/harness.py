"""One spec -> one record: provide its teachers, train its student (unless saved), evaluate.

Teachers depend on (sources, classes, backbone, recipe, seed, image size, validation share)
only, so each is trained once, saved beside the runs and reused by every student and method;
a lock on the teacher's directory makes sure that, across every process sharing the store,
one trains it and the others wait and load it. Training writes the student's weights and
`training.json`; evaluation reads them, so a run is trained once and can be evaluated any
number of times (`xdkd evaluate`). Each training and evaluation logs to the trackers of
`$XDKD_LOG` (`xdkd run --log`), none by default. Which runs execute where is the executors'
job.
"""

from __future__ import annotations

import resource
import time
from contextlib import ExitStack

import torch
from torch import nn

from benchmark.data.provider import SplitProvider
from benchmark.data.setting import Part, RunSplits, teacher_parts
from benchmark.locks import file_lock
from benchmark.machine import run_threads
from benchmark.methods import METHODS, Method, create_method
from benchmark.methods.source_only import SourceOnly
from benchmark.methods.teachers import EnsembleNetwork, Member, TeacherMemo, Teachers, freeze
from benchmark.models import create_backbone, input_normalisation
from benchmark.provenance import device_description
from benchmark.run.evaluate import accuracy
from benchmark.run.evaluation import Adapt, TrainedTeacher, evaluate_run, support_images
from benchmark.run.fastpath import FastPath
from benchmark.run.tracking import Tracker, open_trackers, spec_params, tracker_names_from_env
from benchmark.run.train import (
    Batches,
    CohortMember,
    FitResult,
    TrainData,
    Training,
    fit,
    fit_cohort,
    fit_training,
)
from benchmark.seeding import derive_seed, generator
from benchmark.store import RunStore
from benchmark.suite.config import EvalSpec
from benchmark.suite.families import domain_info
from benchmark.suite.selection import under_trained
from benchmark.suite.specs import RunRecord, RunSpec, TeacherSpec

TEACHER_EXPERIMENT = "teachers"  # a teacher is shared by suites: its trackers' experiment


class TeacherFailed(Exception):
    """The run's teacher could not be trained; its reason is in the teacher's error.json."""


def peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak memory in MB and what it measures: CUDA allocations, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "peak CUDA memory allocated"
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024, "peak resident memory of the whole process (CPU)"


def train_data(spec: RunSpec, splits: RunSplits, oracle: bool) -> TrainData:
    """What the student trains on under the run's protocol."""
    return TrainData(
        sources=splits.sources(),
        targets=splits.targets(),
        labelled=splits.labelled_target(oracle),
        source_val=splits.source_val(),
        target_val=splits.target_val(),
        num_classes=len(splits.classes),
        generated=splits.generated_per_epoch(),
        image_shape=(3, spec.image_size, spec.image_size),
    )


def teacher_view(
    spec: RunSpec,
    method: Method,
    teachers: list[TrainedTeacher],
    classes: int,
    memo: TeacherMemo | None = None,
) -> Teachers | None:
    """The teachers as the method may read them (the protocol's access), or None for a
    method that uses none; `memo`: the answers its cohort shares."""
    if not method.needs.teacher:
        return None
    access = spec.setting.protocol.params["teacher_access"]
    return Teachers([t.member for t in teachers], classes, access, memo)


def teacher_classes(spec: TeacherSpec) -> list[str]:
    return spec.classes or list(domain_info(spec.sources[0]).classes)


class Harness:
    def __init__(
        self,
        store: RunStore,
        device: torch.device,
        eval_batch_size: int = 512,
        progress: bool = True,
    ) -> None:
        torch.set_num_threads(run_threads())  # before any work: the record names it
        self.store = store
        self.progress = progress
        self.device = device
        self.eval_batch_size = eval_batch_size
        self.splits = SplitProvider(device)
        self.fast = FastPath.for_device(device)
        self.fast.configure_backends()
        self._teachers: dict[str, tuple[nn.Module, dict] | Exception] = {}
        self._teacher_evaluations: dict = {}  # evaluation's teacher metrics, per setting
        self.trackers = tracker_names_from_env()

    def tracker(
        self, key: str, label: str, experiment: str, spec: TeacherSpec | RunSpec
    ) -> Tracker:
        """The trackers of one training or evaluation (files under `<runs dir>/logs/`), the
        spec logged as their parameters."""
        tracker = open_trackers(self.trackers, self.store.root / "logs", label, key, experiment)
        if self.trackers:  # without --log, nothing to flatten the spec for
            tracker.log_params(spec_params(spec.model_dump(mode="json")))
        return tracker

    # --- teachers --------------------------------------------------------------------------

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
                model = create_backbone(spec.backbone, len(teacher_classes(spec)))
                model.load_state_dict(saved[0])
                return freeze(self.fast.prepare(model.to(self.device))), saved[1]
            recorded = self.store.teacher_error(spec)
            if recorded and not retry_failed:
                raise TeacherFailed(f"teacher {spec.key} failed: {recorded}")
            try:
                return self._train_teacher(spec)
            except Exception as error:
                self.store.write_teacher_error(spec, error)
                raise

    def _train_teacher(self, spec: TeacherSpec) -> tuple[nn.Module, dict]:
        classes = teacher_classes(spec)
        torch.manual_seed(derive_seed(spec.seed, "teacher-init", spec.backbone.name))
        model = self.fast.prepare(create_backbone(spec.backbone, len(classes)).to(self.device))
        data = TrainData(
            sources=teacher_parts(self.splits, spec, "train"),
            source_val=teacher_parts(self.splits, spec, "val") if spec.source_validation else [],
            num_classes=len(classes),
        )
        with self.tracker(f"teacher-{spec.key}", spec.label, TEACHER_EXPERIMENT, spec) as tracker:
            result = fit(
                model,
                None,
                SourceOnly("source_only"),
                data,
                spec.recipe,
                generator(spec.seed, self.device, "teacher", spec.key),
                label=spec.label,
                checkpoint=self.store.teacher_checkpoint(spec),
                select=False,
                progress=self.progress,
                fast=self.fast,
                tracker=tracker,
            )
            model.load_state_dict(result.states[spec.recipe.epochs])
            tests = teacher_parts(self.splits, spec, "test")
            source_accuracy = sum(accuracy(model, p.split) for p in tests) / len(tests)
            tracker.log_metrics({"final/source_accuracy": source_accuracy}, result.steps)
        info = {
            "key": spec.key,
            "sources": spec.sources,
            "classes": spec.classes,
            "source_accuracy": source_accuracy,
            "train_wall_time_s": result.train_seconds,
            "params": sum(p.numel() for p in model.parameters()),
            "device": device_description(self.device),
            "fast_path": self.fast.settings(),
        }
        self.store.save_teacher(spec, {k: v.cpu() for k, v in model.state_dict().items()}, info)
        return freeze(model), info

    def run_teachers(self, spec: RunSpec, splits: RunSplits) -> list[TrainedTeacher]:
        teachers = []
        for name, teacher_spec in zip(spec.teacher_names, spec.teacher_specs, strict=True):
            model, info = self.teacher(teacher_spec)
            member = Member(name, model, splits.teacher_columns(teacher_spec))
            teachers.append(TrainedTeacher(member, info))
        return teachers

    # --- one run ---------------------------------------------------------------------------

    def train(
        self,
        spec: RunSpec,
        splits: RunSplits,
        teachers: list[TrainedTeacher],
        tracker: Tracker | None = None,
    ) -> dict:
        """Train the student (resuming from its checkpoint) and save it; its training.json."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        training, method = self._training(spec, splits, teachers, tracker, memo=None)
        self._save_training(spec, splits, method, training.network, fit_training(training))
        return self.store.training(spec.key)

    def _training(
        self,
        spec: RunSpec,
        splits: RunSplits,
        teachers: list[TrainedTeacher],
        tracker: Tracker | None,
        memo: TeacherMemo | None,
    ) -> tuple[Training, Method]:
        """The run's Training, built (and resumed) under the global random state of the
        spec's seed; `memo`: the cohort's shared teacher answers."""
        method = create_method(spec.method).to(self.device)
        data = train_data(spec, splits, method.needs.oracle)
        torch.manual_seed(derive_seed(spec.seed, "student-init", spec.student.name))
        student = create_backbone(spec.student, len(splits.classes)).to(self.device)
        student = self.fast.prepare(student)
        if spec.student_recipe.compile:
            student.compile()
        view = teacher_view(spec, method, teachers, len(splits.classes), memo)
        torch.manual_seed(derive_seed(spec.seed, "student-train", spec.draws_key))
        training = Training(
            student,
            view,
            method,
            data,
            spec.student_recipe,
            generator(spec.seed, self.device, "student", spec.draws_key),
            label=spec.label,
            checkpoint=self.store.checkpoint(spec.key),
            progress=self.progress,
            fast=self.fast,
            tracker=tracker,
        )
        return training, method

    def _save_training(
        self,
        spec: RunSpec,
        splits: RunSplits,
        method: Method,
        student: nn.Module,
        result: FitResult,
        cohort: dict | None = None,
    ) -> None:
        """The student's kept weights and training.json; `cohort`: what its cohort was."""
        oracle = method.needs.oracle
        memory_mb, memory_kind = peak_memory(self.device)
        info = {
            "curves": result.curves,
            "selections": result.selections,
            "under_trained": under_trained(result.curves),
            "epochs": spec.student_recipe.epochs,
            "steps": result.steps,
            "resumed_epochs": result.resumed_epochs,
            "saw": splits.saw(oracle),
            "train_wall_time_s": result.train_seconds,
            "method_params": sum(p.numel() for p in method.parameters()),
            "student_inputs": input_normalisation(student),
            "peak_memory_mb": memory_mb,
            "notes": {"peak_memory_mb": memory_kind},
            "device": device_description(self.device),
            "fast_path": {**self.fast.settings(), "compile": spec.student_recipe.compile},
        }
        if cohort is not None:
            info["cohort"] = cohort
            info["notes"]["peak_memory_mb"] += ", while its whole cohort trained"
            info["notes"]["train_wall_time_s"] = (
                "the run's own steps and the teacher work its cohort shared with it: what it "
                "costs alone"
            )
        method_state = None
        if method.adapts_at_test:
            info["adaptation"] = method.adaptation_budget()
            method_state = {k: v.cpu() for k, v in method.state_dict().items()}
        states = {e: {k: v.cpu() for k, v in s.items()} for e, s in result.states.items()}
        self.store.save_training(spec.key, info, states, method_state)

    def train_cohort(self, specs: list[RunSpec]) -> dict[str, Exception | None]:
        """Train the students of runs that share setting, teachers, seed and recipe as one
        cohort (`benchmark.run.train.fit_cohort`) and save each as `train` would; per key, None
        or the error its run failed with. A run whose student is saved already is left out.
        Its records say they were trained in a cohort, and of what size."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        memo = TeacherMemo()
        failed: dict[str, Exception | None] = {}
        built: dict[str, tuple[RunSpec, RunSplits, Method, CohortMember]] = {}
        with ExitStack() as trackers:
            for spec in specs:
                if self.store.training(spec.key) is not None:
                    continue
                try:
                    splits = RunSplits(self.splits, spec)
                    teachers = self.run_teachers(spec, splits)
                    tracker = trackers.enter_context(
                        self.tracker(spec.key, spec.label, spec.suite, spec)
                    )
                    training, method = self._training(spec, splits, teachers, tracker, memo)
                except Exception as error:
                    failed[spec.key] = error
                    continue
                built[spec.key] = (spec, splits, method, CohortMember(spec.key, training))
            started = time.perf_counter()
            results = fit_cohort([member for *_, member in built.values()], memo)
        cohort = {
            "size": len(built),
            "train_wall_time_s": time.perf_counter() - started,
            "teacher_hits": memo.hits,
            "teacher_misses": memo.misses,
        }
        for key, (spec, splits, method, member) in built.items():
            result = results[key]
            if isinstance(result, Exception):
                failed[key] = result
                continue
            try:
                self._save_training(spec, splits, method, member.training.network, result, cohort)
                failed[key] = None
            except Exception as error:
                failed[key] = error
        return failed

    def adapter(
        self,
        spec: RunSpec,
        splits: RunSplits,
        teachers: list[TrainedTeacher],
        network: nn.Module,
        training: dict,
    ) -> Adapt:
        """Test-time adaptation for a method that adapts (Meta-DMoE): the method rebuilt as
        training left it (`setup` on a probe batch, then its saved parts), adapting the
        student to each scored domain from `support_images` unlabelled images of its test
        split, drawn by the run's seed and the domain's name."""
        method = create_method(spec.method).to(self.device)
        view = teacher_view(spec, method, teachers, len(splits.classes))
        data = train_data(spec, splits, method.needs.oracle)
        probe = generator(spec.seed, self.device, "adaptation-probe", spec.key)
        method.setup(
            network, view, Batches(data, spec.student_recipe.batch_size, probe, False).next(0.0)
        )
        method.load_state_dict(self.store.method_state(spec.key, training))
        method.eval()
        size = int(method.adaptation_budget()["support_images"])

        def adapt(student: nn.Module, part: Part) -> nn.Module:
            draw = generator(spec.seed, self.device, "adaptation-support", part.domain)
            return method.adapt(student, view, support_images(part.split, size, draw))

        return adapt

    def run_one(self, spec: RunSpec, evaluation: EvalSpec) -> tuple[RunRecord, bool]:
        """Train (unless the store holds the trained student) and evaluate; (record, whether
        it trained here). The run's trackers get its training and its record's metrics."""
        splits = RunSplits(self.splits, spec)
        teachers = self.run_teachers(spec, splits)
        with self.tracker(spec.key, spec.label, spec.suite, spec) as tracker:
            record, trained = self._train_and_evaluate(spec, evaluation, splits, teachers, tracker)
            final = {f"final/{name}": value for name, value in record.metrics.items()}
            tracker.log_metrics(final, record.training.get("steps", 0))
        return record, trained

    def _train_and_evaluate(
        self,
        spec: RunSpec,
        evaluation: EvalSpec,
        splits: RunSplits,
        teachers: list[TrainedTeacher],
        tracker: Tracker,
    ) -> tuple[RunRecord, bool]:
        classes = len(splits.classes)
        if not METHODS.get(spec.method.name).trains_student:
            network = EnsembleNetwork([t.member for t in teachers], classes).to(self.device)
            training, states, trained = None, {}, False
        else:
            training = self.store.training(spec.key)
            trained = training is None
            if trained:
                training = self.train(spec, splits, teachers, tracker)
            network = self.fast.prepare(create_backbone(spec.student, classes).to(self.device))
            last = training["epochs"]
            network.load_state_dict(self.store.student_state(spec.key, training, last))
            states = {
                epoch: self.store.student_state(spec.key, training, epoch)
                for epoch in set(training["selections"].values()) - {last}
            }
        adapt = None
        if METHODS.get(spec.method.name).adapts_at_test:
            adapt = self.adapter(spec, splits, teachers, network, training)
        with self.fast.autocast(self.device):
            record = evaluate_run(
                spec,
                evaluation,
                network.eval(),
                training,
                states,
                teachers,
                self.splits,
                self.device,
                self.fast,
                self.eval_batch_size,
                self._teacher_evaluations,
                adapt,
            )
        return record, trained
