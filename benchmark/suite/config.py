"""Typed configuration: suites (YAML), the run specs they expand into, and run records.

A leaf: it imports neither torch nor the methods. The names a suite uses (methods and their
parameters, backbones, corruptions) are checked against a `Catalogue` that reaches the
validators through pydantic's validation context (`Suite.model_validate(raw, context=
{"catalogue": ...})`); specs read back from a run directory validate without one.

What a suite expands into (settings, run and teacher specs) and what a run produces (its
record) are in `benchmark.suite.specs`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from benchmark.registry import unknown_name_message
from benchmark.suite.protocols import PROTOCOLS, protocol_label
from benchmark.suite.selection import RULES

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SAFE_NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"
# `Recipe.augment`'s policies (`benchmark.data.augment`); `none` and `standard` are stored as
# false and true, the field's values before it took names, so their run keys stay as they were
AUGMENT_POLICIES = ("none", "standard", "randaugment", "autoaugment", "mixup", "cutmix")
REFERENCES = ("kd", "source_only")  # what every method is compared with, paired by cell


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _catalogue(info: ValidationInfo) -> Any:
    return (info.context or {}).get("catalogue")


def safe_name(value: str, what: str) -> str:
    """Names that become file or directory names: no separators, no dot-files."""
    if not SAFE_NAME.match(value):
        raise ValueError(f"{what} '{value}' is not a usable name: use {SAFE_NAME_RULE}")
    return value


def _named(value: Any) -> Any:
    """Allow `resnet18` as shorthand for `{name: resnet18}` in suite files."""
    return {"name": value} if isinstance(value, str) else value


def spec_hash(model: BaseModel, exclude: Any = None) -> str:
    canonical = json.dumps(model.model_dump(mode="json", exclude=exclude), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class BackboneSpec(Strict):
    """A timm model name and the keyword arguments `timm.create_model` gets. `pretrained`:
    false (random init), true (timm's default weights, from the local cache only) or the
    path of a weights file."""

    name: str
    pretrained: bool | str = False
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def known_backbone(cls, name: str, info: ValidationInfo) -> str:
        catalogue = _catalogue(info)
        if catalogue is not None and name not in catalogue.backbones:
            raise ValueError(unknown_name_message("backbone", name, catalogue.backbones))
        return name


class ProtocolSpec(Strict):
    """A protocol and its parameters, every default filled in. In a suite: a name (`uda`) or
    a mapping of the name and its parameters (`{name: few_shot, shots: 5}`)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def flat_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "params" not in value:
            return {
                "name": value.get("name"),
                "params": {k: v for k, v in value.items() if k != "name"},
            }
        return value

    @model_validator(mode="after")
    def known_parameters(self) -> ProtocolSpec:
        if self.name not in PROTOCOLS:
            raise ValueError(unknown_name_message("protocol", self.name, list(PROTOCOLS)))
        declared = PROTOCOLS[self.name].all_parameters()
        for key, value in self.params.items():
            if key not in declared:
                valid = ", ".join(declared)
                raise ValueError(
                    f"protocol '{self.name}' has no parameter '{key}'; its parameters: {valid}"
                )
            rule = declared[key]
            if rule.choices and value not in rule.choices:
                raise ValueError(
                    f"protocol '{self.name}': {key} is {value!r}; choose "
                    + ", ".join(map(str, rule.choices))
                )
            if rule.minimum is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < rule.minimum
            ):
                raise ValueError(
                    f"protocol '{self.name}': {key} must be a whole number >= {rule.minimum}"
                )
        missing = [
            k for k, rule in declared.items() if rule.default is None and k not in self.params
        ]
        if missing:
            raise ValueError(
                f"protocol '{self.name}' needs {missing[0]}: e.g. "
                f"{{name: {self.name}, {missing[0]}: 5}}"
            )
        filled = {k: rule.default for k, rule in declared.items() if rule.default is not None}
        object.__setattr__(self, "params", {**filled, **self.params})
        return self

    @property
    def label(self) -> str:
        return protocol_label(self.name, self.params)


def _one_or_more(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


def parameter_problem(method: str, key: str, value: Any, defaults: dict[str, Any]) -> str | None:
    """Why a method parameter is not acceptable, or None: it must be declared, with a value of
    its default's type (a whole number where the default is one; any number for a float)."""
    if key not in defaults:
        closest = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
        hint = f"; did you mean '{closest[0]}'?" if closest else ""
        valid = ", ".join(defaults) or "none"
        return f"method '{method}' has no parameter '{key}'{hint} its parameters: {valid}"
    default = defaults[key]
    if isinstance(default, bool):
        fits, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        fits, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        fits, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        fits, kind = isinstance(value, str), "text"
    else:
        fits, kind = True, ""
    if not fits:
        return f"method '{method}': {key} is {value!r}, not {kind} (its default is {default!r})"
    return None


CONTROL_MARK = "(A/A)"  # follows a control run's row label; never ranked, never compared


class ControlSpec(Strict):
    """A control the suite runs beside its methods. `aa`: for `method` (default: the first
    of kd and source_only the suite has, else its first method), a second run of every
    spec with another data-order stream (the batches, augmentations and dropout drawn
    anew; everything else equal); the A/A differences measure the null spread every
    comparison of the report is held against."""

    name: Literal["aa"]
    method: str | None = None


class SeedPlan(Strict):
    """`seeds: {min: 5, max: 20, until_halfwidth: 2.0}`: seeds 0 to min-1 first, then one
    more at a time until the 95% interval of the key comparison (`method` against `against`;
    left out: every method, every reference) is at most `until_halfwidth` points either side
    in every row, or `max` seeds ran. Seeds by need (Bouthillier et al., MLSys 2021): the
    noise of a comparison, not a habit, sets its n. The suite's `seeds` are those planned so
    far; `xdkd run` adds the rest."""

    min: int = Field(5, ge=2)
    max: int = Field(20, ge=2)
    until_halfwidth: float = Field(gt=0)
    method: str | None = None
    against: str | None = None

    @field_validator("against")
    @classmethod
    def a_reference(cls, against: str | None) -> str | None:
        if against is not None and against not in REFERENCES:
            raise ValueError(f"'{against}' is not a reference; give one of {', '.join(REFERENCES)}")
        return against

    @model_validator(mode="after")
    def min_below_max(self) -> SeedPlan:
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}; give max >= min")
        return self


class SearchPlan(Strict):
    """`search: {trials: 8, seed: 0, select: source-val}`: for each method and setting,
    `trials` draws from the method's search space (and, with `recipe`, the student's learning
    rate and weight decay), each trained with the suite's seeds, beside the defaults as trial
    0 (DomainBed's random search, Gulrajani & Lopez-Paz 2021). `spaces` adds or replaces
    distributions per method (`{kd: {temperature: {log_uniform: [1, 8]}}}`); a method's
    parameters fixed in its `params` are not searched. `select`: the rule that picks each
    method's draw in the tuned report (`benchmark.suite.selection`)."""

    trials: int
    seed: int = 0
    select: str = "source-val"
    recipe: bool = True
    spaces: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("trials")
    @classmethod
    def some_trials(cls, trials: int) -> int:
        if trials < 1:
            raise ValueError(
                f"trials is {trials}: a search needs at least one draw beside the defaults; "
                "give trials: 8, or remove search"
            )
        return trials

    @field_validator("select")
    @classmethod
    def known_rule(cls, select: str) -> str:
        if select not in RULES:
            raise ValueError(unknown_name_message("selection rule", select, list(RULES)))
        return select


# a list of seeds, or a plan that adds seeds by need (tagged so an error names which it read)
Seeds = Annotated[
    Annotated[list[int], Field(min_length=1), Tag("list")] | Annotated[SeedPlan, Tag("plan")],
    Discriminator(lambda value: "plan" if isinstance(value, dict | SeedPlan) else "list"),
]


class MethodSpec(Strict):
    """A registered method, overrides of its paper-default hyperparameters, a row label (its
    name unless set: needed when one method appears twice with different parameters) and
    optionally the protocols it runs under instead of the suite's."""

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    protocol: list[ProtocolSpec] | None = None
    plugin: str | None = None  # filled in from the catalogue: a plug-in method's version
    grid: dict[str, Any] | None = None  # filled in by expansion: the run's cell of `Suite.grid`
    # filled in by expansion for an A/A control: the run's data-order stream (its own is 0)
    stream: int | None = Field(None, ge=1)
    # filled in by expansion for a draw of the suite's `search` (the defaults are trial 0)
    trial: int | None = Field(None, ge=1)

    @model_serializer(mode="wrap")
    def _optional_when_set(self, handler: Any) -> dict[str, Any]:
        """`plugin` (plug-in methods), `grid` (runs of a suite's grid), `stream` (A/A
        controls) and `trial` (search draws) are written only when set, so every other run
        keeps the key it had before the fields existed; a grid cell, a stream or a trial is
        hashed into its key, so no two cells of a grid, no control and its original, and no
        two draws share a run."""
        data = handler(self)
        for name in ("plugin", "grid", "stream", "trial"):
            if getattr(self, name) is None:
                data.pop(name, None)
        return data

    @field_validator("protocol", mode="before")
    @classmethod
    def one_or_more_protocols(cls, value: Any) -> Any:
        return _one_or_more(value)

    @field_validator("label")
    @classmethod
    def usable_label(cls, label: str | None) -> str | None:
        return None if label is None else safe_name(label, "method label")

    @model_validator(mode="after")
    def known_method_and_parameters(self, info: ValidationInfo) -> MethodSpec:
        catalogue = _catalogue(info)
        if catalogue is None:
            return self
        if self.name not in catalogue.methods:
            raise ValueError(unknown_name_message("method", self.name, list(catalogue.methods)))
        defaults = catalogue.methods[self.name].defaults
        for key, value in self.params.items():
            problem = parameter_problem(self.name, key, value, defaults)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def row(self) -> str:
        """The method's row in tables; a grid cell's values follow it in brackets
        (`kd [augment=mixup, optimizer=sgd]`), so the cells of a grid are rows apart, and so
        does a search draw's trial (`kd [trial 3]`) until a tuned report picks it."""
        name = self.label or self.name
        name = f"{name} [{grid_label(self.grid)}]" if self.grid else name
        name = f"{name} [trial {self.trial}]" if self.trial is not None else name
        return f"{name} {CONTROL_MARK}" if self.stream is not None else name


def grid_label(cell: dict[str, Any]) -> str:
    """`augment=mixup, optimizer=sgd`: each key by its last part unless two keys share it
    (`student_recipe.augment` and `teacher_recipe.augment` stay whole), sorted by key so a
    record read back (JSON with sorted keys) gives the same label."""
    last = {key: key.rpartition(".")[2] for key in cell}
    shared = [name for name in last.values() if list(last.values()).count(name) > 1]
    shown = lambda v: v if isinstance(v, str) else json.dumps(v)  # noqa: E731
    return ", ".join(
        f"{key if last[key] in shared else last[key]}={shown(cell[key])}" for key in sorted(cell)
    )


class Recipe(Strict):
    """How a network is optimised. Defaults: AdamW with a one-cycle schedule, which trained
    every embedded digit domain to its floor where SGD stalled at chance on syndigits.
    `label_smoothing` applies to every labelled cross-entropy of the training (Szegedy et al.
    2016; a teacher trained with it distils worse, Mueller et al. NeurIPS 2019)."""

    epochs: int = Field(8, ge=1)
    batch_size: int = Field(128, ge=2)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: bool | Literal["randaugment", "autoaugment", "mixup", "cutmix"] = True
    compile: bool = False  # torch.compile the student (opt-in; measured in `xdkd bench`)

    @field_validator("augment", mode="before")
    @classmethod
    def augment_policy_name(cls, value: Any) -> Any:
        """A policy of `AUGMENT_POLICIES` or true/false; `standard` is stored as true and
        `none` as false (their keys are those of the bool the field was before)."""
        if not isinstance(value, str):
            return value
        if value not in AUGMENT_POLICIES:
            raise ValueError(
                unknown_name_message("augmentation policy", value, list(AUGMENT_POLICIES))
            )
        return {"none": False, "standard": True}.get(value, value)

    @property
    def augment_policy(self) -> str:
        """The policy's name: `none`, `standard`, `randaugment`, ..."""
        return policy_of(self.augment)

    @model_serializer(mode="wrap")
    def _compile_when_on(self, handler: Any) -> dict[str, Any]:
        """`compile` is written only when on, so a recipe without it keeps the key it had
        before the field existed (every committed run key stays valid)."""
        data = handler(self)
        if not self.compile:
            data.pop("compile", None)
        return data


def policy_of(value: bool | str) -> str:
    """A policy name from a recipe's `augment` (true: `standard`, false: `none`)."""
    if isinstance(value, bool):
        return "standard" if value else "none"
    return value


def _class_names(value: Any) -> Any:
    """Classes are named as the family names them; `[0, 1]` reads as `["0", "1"]`."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


class TaskSpec(Strict):
    """A task of a `multi_task` suite: its teacher learns `classes` on `source`; the student
    learns them for `target` (default: the source itself)."""

    name: str
    source: str
    target: str | None = None
    classes: list[str] = Field(min_length=1)

    @field_validator("classes", mode="before")
    @classmethod
    def named_classes(cls, value: Any) -> Any:
        return _class_names(value)

    @field_validator("name")
    @classmethod
    def usable_name(cls, name: str) -> str:
        return safe_name(name, "task name")

    @property
    def target_domain(self) -> str:
        return self.target or self.source


class PairSpec(Strict):
    """One entry of a suite's `pairs`: a source and a target, either of which may be a list,
    or `leave_one_out: [a, b, c]` (each domain in turn the target of all the others)."""

    source: str | list[str] | None = None
    target: str | list[str] | None = None
    leave_one_out: list[str] | None = None

    @model_validator(mode="after")
    def one_form(self) -> PairSpec:
        if self.leave_one_out is not None:
            if self.source is not None or self.target is not None:
                raise ValueError("give either leave_one_out or source (and target), not both")
            if len(self.leave_one_out) < 3:
                raise ValueError("leave_one_out needs at least 3 domains (2 sources and a target)")
        elif self.source is None:
            raise ValueError("a pair needs a source, e.g. {source: mnist, target: mnistm}")
        return self

    def expanded(self) -> list[tuple[list[str], list[str]]]:
        """(sources, targets) of each setting this entry stands for; targets are empty when
        none was given (in-domain)."""
        if self.leave_one_out is not None:
            domains = self.leave_one_out
            return [([d for d in domains if d != target], [target]) for target in domains]
        as_list = lambda v: [] if v is None else [v] if isinstance(v, str) else list(v)  # noqa: E731
        return [(as_list(self.source), as_list(self.target))]


class EvalSpec(Strict):
    """What evaluation applies to a saved student; outside the training key."""

    corruptions: list[str] = Field(default_factory=lambda: ["benchmark", "shape"])
    corruption_images: int = Field(1000, ge=0)
    teacher_floor: float = Field(0.7, ge=0, le=1)
    heldout: list[str] | None = None  # None: the family's other domains of the target's kind

    @field_validator("corruptions")
    @classmethod
    def known_corruptions(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        catalogue = _catalogue(info)
        if catalogue is not None:
            from benchmark.suite.catalogue import resolve_corruptions

            try:
                resolve_corruptions(entries, catalogue)
            except LookupError as error:
                raise ValueError(str(error)) from None
        return entries

    @property
    def key(self) -> str:
        return spec_hash(self)


EVALUATION_FIELDS = tuple(EvalSpec.model_fields)
GRID_EXCLUDED = ("name", "description", "grid", "controls", "search")


class Suite(Strict):
    """A benchmark suite: every setting (pair or task set, under each protocol that fits it)
    x teacher x student x method x seed is one run."""

    name: str
    description: str = ""
    pairs: list[PairSpec] = Field(default_factory=list)
    tasks: list[TaskSpec] = Field(default_factory=list)
    teachers: list[BackboneSpec] = Field(min_length=1)
    students: list[BackboneSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    seeds: Seeds = [0]
    protocol: list[ProtocolSpec] = Field(
        default_factory=lambda: [ProtocolSpec(name="uda")], min_length=1
    )
    image_size: int = Field(32, ge=8)
    source_validation: float = Field(0.1, ge=0, lt=1)
    target_validation: float = Field(0.1, ge=0, lt=1)
    teacher_recipe: Recipe = Recipe()
    student_recipe: Recipe = Recipe()
    corruptions: list[str] = Field(default_factory=lambda: ["benchmark", "shape"])
    corruption_images: int = Field(1000, ge=0)
    teacher_floor: float = Field(0.7, ge=0, le=1)
    heldout: list[str] | None = None
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    controls: list[ControlSpec] = Field(default_factory=list)
    search: SearchPlan | None = None

    @field_validator("name")
    @classmethod
    def usable_name(cls, name: str) -> str:
        return safe_name(name, "suite name")

    @field_validator("controls", mode="before")
    @classmethod
    def shorthand_controls(cls, values: Any) -> Any:
        return [_named(v) for v in values] if isinstance(values, list) else values

    @field_validator("grid")
    @classmethod
    def trainable_grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Dotted keys of training fields (`--set`'s), each with values to sweep: every
        cell of their product is a set of runs (`benchmark.suite.expansion.grid_cells`). Not the
        evaluation fields: one sweep evaluates all its runs alike."""
        for key, values in grid.items():
            field_name = key.partition(".")[0]
            if field_name in (*EVALUATION_FIELDS, *GRID_EXCLUDED):
                raise ValueError(
                    f"'{key}' cannot be swept: a grid sweeps training fields (recipes, "
                    "methods, image_size, ...), not name, description or evaluation settings"
                )
            if not values:
                raise ValueError(f"'{key}' has no values; give a list, e.g. [none, mixup]")
            shown = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(shown)) < len(shown):
                raise ValueError(f"'{key}' lists a value twice; remove it")
        return grid

    @field_validator("protocol", mode="before")
    @classmethod
    def one_or_more_protocols(cls, value: Any) -> Any:
        return _one_or_more(value)

    @field_validator("teachers", "students", "methods", mode="before")
    @classmethod
    def shorthand_names(cls, values: Any) -> Any:
        return [_named(v) for v in values] if isinstance(values, list) else values

    @field_validator("corruptions")
    @classmethod
    def known_corruptions(cls, entries: list[str], info: ValidationInfo) -> list[str]:
        return EvalSpec.known_corruptions(entries, info)

    @property
    def first_seeds(self) -> list[int]:
        """The seeds to run first: the list, or a seed plan's first `min`."""
        return list(range(self.seeds.min)) if isinstance(self.seeds, SeedPlan) else self.seeds

    @property
    def evaluation(self) -> EvalSpec:
        return EvalSpec(**{name: getattr(self, name) for name in EVALUATION_FIELDS})
