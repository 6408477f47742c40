"""What a run is and what it produced: its setting, its teachers' specs, its training spec
and its record. A leaf like `benchmark.suite.config` (no torch).

A run has two keys: `RunSpec.key` hashes only what changes training (the data the run sees,
teachers, student, method and its parameters, recipes, seed); `EvalSpec.key` hashes what
evaluation applies to the saved student (corruptions, corruption images, floor, held-out
domains), so changing those never retrains anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

from benchmark.suite.config import (
    BackboneSpec,
    EvalSpec,
    MethodSpec,
    ProtocolSpec,
    Recipe,
    Strict,
    TaskSpec,
    spec_hash,
)

RECORD_FORMAT = "xdkd-record/2"


class Setting(Strict):
    """The data of one run: its protocol, source and target domains, and tasks (multi_task)."""

    protocol: ProtocolSpec
    sources: list[str]
    targets: list[str]
    tasks: list[TaskSpec] = Field(default_factory=list)

    @property
    def label(self) -> str:
        """`mnist→mnistm`, `mnist+syndigits→mnistm`, `mnist→mnistm+syndigits`, tasks: `low+high`;
        no sources (a model evaluated without naming what it trained on): `mnistm`."""
        if self.tasks:
            return "+".join(task.name for task in self.tasks)
        if not self.sources:
            return "+".join(self.targets)
        return f"{'+'.join(self.sources)}→{'+'.join(self.targets)}"

    @property
    def scored(self) -> list[str]:
        """What the run is scored on one by one: each task, or each target domain."""
        return [task.name for task in self.tasks] or list(self.targets)


class TeacherSpec(Strict):
    """What a teacher depends on; its hash is the key of the shared teacher cache. It learns
    `classes` (all of its family's when None) on the union of `sources`."""

    sources: list[str]
    classes: list[str] | None = None
    backbone: BackboneSpec
    recipe: Recipe
    seed: int
    image_size: int
    source_validation: float

    @property
    def key(self) -> str:
        return spec_hash(self)

    @property
    def label(self) -> str:
        classes = f" classes {','.join(self.classes)}" if self.classes else ""
        return f"teacher {self.backbone.name} on {'+'.join(self.sources)}{classes} seed {self.seed}"


class RunSpec(Strict):
    """One run's training. A run is a pure function of its spec; the spec's hash (without the
    suite's name and the row label) names its directory."""

    suite: str
    setting: Setting
    teacher: BackboneSpec
    student: BackboneSpec
    method: MethodSpec
    seed: int
    image_size: int
    source_validation: float
    target_validation: float
    teacher_recipe: Recipe
    student_recipe: Recipe

    @property
    def key(self) -> str:
        return spec_hash(self, exclude={"suite": True, "method": {"label"}})

    @property
    def draws_key(self) -> str:
        """Names the draws of the run's batches, augmentations and dropout: the data and the
        student, not the method, so every method of a seed sees the same batches (common
        random numbers make paired comparisons sharper) and teacher access changes nothing.
        An A/A control's stream draws them anew."""
        setting = self.setting.model_dump(mode="json")
        setting["protocol"]["params"].pop("teacher_access", None)
        draws = {
            "setting": setting,
            "student": self.student.model_dump(mode="json"),
            "recipe": self.student_recipe.model_dump(mode="json"),
            "sizes": [self.image_size, self.source_validation, self.target_validation],
        }
        if self.method.stream is not None:
            draws["stream"] = self.method.stream
        return hashlib.sha256(json.dumps(draws, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return (
            f"{self.method.row} {self.student.name} {self.setting.label} "
            f"[{self.setting.protocol.label}] seed {self.seed}"
        )

    @property
    def teacher_names(self) -> list[str]:
        """The names of the run's teachers, in the order of `teacher_specs`."""
        setting = self.setting
        if setting.tasks:
            return [task.name for task in setting.tasks]
        if setting.protocol.params.get("teachers") == "union":
            return ["+".join(setting.sources)]
        return list(setting.sources)

    @property
    def teacher_specs(self) -> list[TeacherSpec]:
        common = {
            "backbone": self.teacher,
            "recipe": self.teacher_recipe,
            "seed": self.seed,
            "image_size": self.image_size,
            "source_validation": self.source_validation,
        }
        setting = self.setting
        if setting.tasks:
            return [
                TeacherSpec(sources=[t.source], classes=t.classes, **common) for t in setting.tasks
            ]
        if setting.protocol.params.get("teachers") == "union":
            return [TeacherSpec(sources=setting.sources, **common)]
        return [TeacherSpec(sources=[source], **common) for source in setting.sources]


class RunRecord(BaseModel):
    """Everything a finished run produced, with the provenance of every number.

    `metrics`: the last epoch's model, every metric; `selected`: per model-selection rule, the
    clean metrics of the epoch that rule chose from `curves` (absent where it chose none);
    `saw`: what training used (domains, images, teachers); `per_class`: per scored item
    (target or task), the last epoch's accuracy on each class; `training`: how training went;
    `external`: for a checkpoint trained outside the suite (`xdkd evaluate-model`), its weights
    file, their sha256 and backbone (None, and not written, for the suite's own runs)."""

    format: Literal["xdkd-record/2"] = RECORD_FORMAT
    key: str
    spec: RunSpec
    evaluation: EvalSpec
    evaluation_key: str
    status: Literal["ok"] = "ok"
    saw: dict[str, Any]
    teachers: list[dict[str, Any]]
    curves: dict[str, list[float]] = Field(default_factory=dict)
    selections: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float]
    selected: dict[str, dict[str, float]] = Field(default_factory=dict)
    robustness: dict[str, Any] = Field(default_factory=dict)
    per_domain: dict[str, float]
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, str] = Field(default_factory=dict)
    wall_time_s: float
    device: str
    fast_path: dict[str, Any] = Field(default_factory=dict)  # evaluation's; training's in training
    provenance: dict[str, str]
    external: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _external_when_set(self, handler: Any) -> dict[str, Any]:
        """`external` is written only for external records, so the suite's records stay as
        they were before the field existed."""
        data = handler(self)
        if self.external is None:
            data.pop("external", None)
        return data
