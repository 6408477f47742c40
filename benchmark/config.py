"""Typed configuration: suites (YAML), the run specs they expand into, and run records.

Everything is validated when loaded, so a typo in a suite file stops the program before any
training, with the file, the line and the field in one message.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmark.errors import XdkdError

Protocol = Literal["uda", "labelled_target", "zero_shot"]
PROTOCOLS: tuple[str, ...] = ("uda", "labelled_target", "zero_shot")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_value_error(check: Any, name: str) -> Any:
    """Registry errors inside validators become ValueErrors, so pydantic adds the field."""
    try:
        return check(name)
    except XdkdError as error:
        raise ValueError(str(error)) from None


def _named(value: Any) -> Any:
    """Allow `resnet18` as shorthand for `{name: resnet18}` in suite files."""
    return {"name": value} if isinstance(value, str) else value


class BackboneSpec(Strict):
    """A timm model name and the keyword arguments `timm.create_model` gets. `pretrained`:
    false (random init), true (timm's default weights, from the local cache only) or the
    path of a weights file."""

    name: str
    pretrained: bool | str = False
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def known_backbone(cls, name: str) -> str:
        from benchmark.models.backbones import check_backbone_name

        return _as_value_error(check_backbone_name, name)


class MethodSpec(Strict):
    """A registered method, overrides of its paper-default hyperparameters, and optionally
    the protocol it runs under instead of the suite's (e.g. a transfer baseline that needs
    target labels, in a suite that is otherwise `uda`)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    protocol: Protocol | None = None

    @field_validator("name")
    @classmethod
    def known_method(cls, name: str) -> str:
        from benchmark.methods import METHODS

        _as_value_error(METHODS.get, name)
        return name


class Pair(Strict):
    source: str
    target: str

    @field_validator("source", "target")
    @classmethod
    def known_domain(cls, name: str) -> str:
        from benchmark.data.domains import domain_info

        _as_value_error(domain_info, name)
        return name

    @property
    def label(self) -> str:
        return f"{self.source}→{self.target}"


class Recipe(Strict):
    """How a network is optimised. Defaults: AdamW with a one-cycle schedule, which trained
    every embedded digit domain to its floor where SGD stalled at chance on syndigits."""

    epochs: int = Field(8, ge=1)
    batch_size: int = Field(128, ge=2)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: bool = True


class Suite(Strict):
    """A benchmark suite: every pair x teacher x student x method x seed is one run."""

    name: str
    description: str = ""
    pairs: list[Pair] = Field(min_length=1)
    teachers: list[BackboneSpec] = Field(min_length=1)
    students: list[BackboneSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    protocol: list[Protocol] = Field(["uda"], min_length=1)
    image_size: int = Field(32, ge=8)
    source_validation: float = Field(0.1, ge=0, lt=1)
    corruptions: list[str] = Field(default_factory=lambda: ["benchmark", "shape"])
    corruption_images: int = Field(1000, ge=0)
    teacher_recipe: Recipe = Recipe()
    student_recipe: Recipe = Recipe()
    teacher_floor: float = Field(0.7, ge=0, le=1)

    @field_validator("corruptions")
    @classmethod
    def known_corruptions(cls, entries: list[str]) -> list[str]:
        from benchmark.robustness import resolve_corruptions

        _as_value_error(resolve_corruptions, entries)
        return entries

    @field_validator("protocol", mode="before")
    @classmethod
    def one_or_more_protocols(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("teachers", "students", "methods", mode="before")
    @classmethod
    def shorthand_names(cls, values: Any) -> Any:
        return [_named(v) for v in values] if isinstance(values, list) else values


class TeacherSpec(Strict):
    """What a teacher depends on; its hash is the key of the shared teacher cache."""

    source: str
    backbone: BackboneSpec
    recipe: Recipe
    seed: int
    image_size: int
    source_validation: float

    @property
    def key(self) -> str:
        return spec_hash(self)


class RunSpec(Strict):
    """One run. A run is a pure function of its spec; the spec's hash names its directory."""

    suite: str
    pair: Pair
    teacher: BackboneSpec
    student: BackboneSpec
    method: MethodSpec
    seed: int
    protocol: Protocol
    image_size: int
    source_validation: float
    corruptions: list[str]
    corruption_images: int
    teacher_recipe: Recipe
    student_recipe: Recipe
    teacher_floor: float

    @property
    def key(self) -> str:
        return spec_hash(self, exclude={"suite"})

    @property
    def teacher_spec(self) -> TeacherSpec:
        return TeacherSpec(
            source=self.pair.source,
            backbone=self.teacher,
            recipe=self.teacher_recipe,
            seed=self.seed,
            image_size=self.image_size,
            source_validation=self.source_validation,
        )


def spec_hash(model: BaseModel, exclude: set[str] | None = None) -> str:
    canonical = json.dumps(model.model_dump(mode="json", exclude=exclude), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class RunRecord(BaseModel):
    """Everything a finished run produced, with the provenance of every number.

    `metrics` are the last-epoch model's; `selected` the source-validation-selected model's
    (training-domain validation), absent when the suite holds out no source validation.
    """

    key: str
    spec: RunSpec
    status: Literal["ok"] = "ok"
    metrics: dict[str, float]
    selected: dict[str, float] | None = None
    robustness: dict[str, Any] = Field(default_factory=dict)
    teacher: dict[str, Any]
    per_domain: dict[str, float]
    notes: dict[str, str] = Field(default_factory=dict)
    wall_time_s: float
    device: str
    provenance: dict[str, str]


# --- loading -----------------------------------------------------------------------------


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set student_recipe.epochs=2 --set seeds=[0,1]`: dotted keys, YAML values."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise XdkdError(f"--set '{override}' is not key=value, e.g. --set seeds=[0,1]")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise XdkdError(f"--set '{override}': '{part}' is not a mapping in the suite")
            node = child
        node[leaf] = yaml.safe_load(value)
    return raw


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location, as deep as it exists."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def validation_message(path: Path, root: yaml.Node | None, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function")))
    field = ".".join(str(p) for p in loc) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; remove it or check its spelling"
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {field}: {message}{more}"


def load_suite(path: str | Path, overrides: list[str] | None = None) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise XdkdError(f"suite file '{path}' not found; suites live in baselines/, e.g. quick")
    text = path.read_text()
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise XdkdError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(raw, dict):
        raise XdkdError(f"{path}: a suite is a YAML mapping with name, pairs, teachers, ...")
    raw = apply_overrides(raw, overrides or [])
    raw.setdefault("name", path.stem)
    try:
        return Suite.model_validate(raw)
    except ValidationError as error:
        raise XdkdError(validation_message(path, root, error)) from None
