"""Transfer settings as data: what a protocol grants a run, what a method needs, and whether
they meet.

A protocol is one declaration (`Protocol`) in `PROTOCOLS`: how many source and target domains
a setting has, what of the target the student may use in training (nothing, unlabelled
images, k labelled images per class beside the unlabelled rest, or every label), how the
teachers are laid out (one per source, one on the union of the sources, one per task) and
which of its parameters a suite may set. Every protocol also takes `teacher_access`:
`features` (white box: weights, stage features, logits), `logits`, or `probabilities` only
(a black-box API, as in DINE, Liang et al. CVPR 2022), enforced by the teacher wrapper the
method receives (`benchmark.methods.teachers`).

A method declares what it needs (`Needs`); `unmet` says in words what a setting lacks, so
compatibility is computed when a suite expands and no method names a protocol. This module
imports neither torch nor the methods: suites validate against it in any process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Access = Literal["probabilities", "logits", "features"]
ACCESS_LEVELS: tuple[str, ...] = (
    "probabilities",
    "logits",
    "features",
)  # each grants the ones before
TargetData = Literal["none", "unlabelled", "few_shot", "labelled"]
TeacherLayout = Literal["per_source", "union", "per_task"]


@dataclass(frozen=True)
class Parameter:
    """A protocol parameter: its default (None: required), the values it may take, and what
    it means (shown by `xdkd protocols`)."""

    default: Any
    meaning: str
    choices: tuple[Any, ...] = ()
    minimum: int | None = None


TEACHER_ACCESS = Parameter(
    "features",
    "what methods may read of a teacher: features (white box), logits, or probabilities only",
    choices=ACCESS_LEVELS,
)


@dataclass(frozen=True)
class Protocol:
    """What a run under this protocol grants. `sources`/`targets`: how many domains a setting
    has (`targets: source`: the target is the source domain itself)."""

    name: str
    summary: str
    sources: Literal["one", "several", "tasks"]
    targets: Literal["one", "several", "source", "tasks"]
    target_data: TargetData
    teachers: TeacherLayout
    parameters: dict[str, Parameter] = field(default_factory=dict)
    real_images: bool = True  # False: the student sees no real image, only the teacher

    def all_parameters(self) -> dict[str, Parameter]:
        return {**self.parameters, "teacher_access": TEACHER_ACCESS}


_declared = [
    Protocol(
        "in_domain",
        "classic distillation for compression: the student learns the teacher's own domain, "
        "scored there and on every other domain of the family",
        sources="one",
        targets="source",
        target_data="none",
        teachers="per_source",
    ),
    Protocol(
        "uda",
        "unsupervised domain adaptation: labelled source, unlabelled target images",
        sources="one",
        targets="one",
        target_data="unlabelled",
        teachers="per_source",
    ),
    Protocol(
        "few_shot",
        "semi-supervised adaptation (MME, Saito et al. ICCV 2019): k labelled target images "
        "per class, fixed by the seed, beside the unlabelled rest",
        sources="one",
        targets="one",
        target_data="few_shot",
        teachers="per_source",
        parameters={
            "shots": Parameter(
                None, "labelled target images per class (1, 3, 5 are usual)", minimum=1
            )
        },
    ),
    Protocol(
        "labelled_target",
        "supervised transfer: every target training image with its label",
        sources="one",
        targets="one",
        target_data="labelled",
        teachers="per_source",
    ),
    Protocol(
        "zero_shot",
        "domain generalisation: no target image at all in training",
        sources="one",
        targets="one",
        target_data="none",
        teachers="per_source",
    ),
    Protocol(
        "multi_source",
        "several labelled sources with one teacher each (or one on their union), one "
        "unlabelled target: model fusion (KD3A, Feng et al. ICML 2021)",
        sources="several",
        targets="one",
        target_data="unlabelled",
        teachers="per_source",
        parameters={
            "teachers": Parameter(
                "per_source",
                "per_source: one teacher per source domain; union: one on all of them",
                choices=("per_source", "union"),
            )
        },
    ),
    Protocol(
        "multi_target",
        "one labelled source, several unlabelled targets, one student scored on each "
        "(MT-MTDA, Nguyen-Meidine et al. WACV 2021)",
        sources="one",
        targets="several",
        target_data="unlabelled",
        teachers="per_source",
    ),
    Protocol(
        "multi_task",
        "several tasks (a source, a target and a set of classes each), a teacher per task, "
        "one student for the union of their classes: knowledge amalgamation (Shen et al. "
        "AAAI 2019; CFL, Luo et al. IJCAI 2019)",
        sources="tasks",
        targets="tasks",
        target_data="unlabelled",
        teachers="per_task",
    ),
    Protocol(
        "data_free",
        "data-free distillation (DAFL, Chen et al. ICCV 2019; ZSKT, Micaelli & Storkey "
        "NeurIPS 2019): the student sees no real image, only the teacher; it learns from "
        "images a generator makes and is scored on the teacher's domain and every other",
        sources="one",
        targets="source",
        target_data="none",
        teachers="per_source",
        real_images=False,
    ),
]
PROTOCOLS: dict[str, Protocol] = {protocol.name: protocol for protocol in _declared}
PROTOCOL_NAMES: tuple[str, ...] = tuple(PROTOCOLS)


def protocol_label(name: str, params: dict[str, Any]) -> str:
    """`few_shot(shots=5)`, `uda(teacher_access=probabilities)`, `uda`: the name and every
    parameter that is not its default (a required one is always shown)."""
    declared = PROTOCOLS[name].all_parameters()
    shown = [
        f"{key}={value}"
        for key, value in params.items()
        if key in declared and value != declared[key].default
    ]
    return f"{name}({', '.join(shown)})" if shown else name


# --- what a run grants, what a method needs --------------------------------------------


@dataclass(frozen=True)
class Grants:
    """What one setting under one protocol gives the student's training."""

    sources: int
    targets: int
    target_images: bool  # unlabelled target images
    target_labels: Literal["none", "few", "all"]
    teachers: int
    teacher_layout: TeacherLayout
    access: Access
    real_images: bool = True

    @property
    def teacher_words(self) -> str:
        per = {"per_source": "one per source", "union": "one on the union of the sources"}
        layout = per.get(self.teacher_layout, "one per task")
        return f"{self.teachers} teacher{'s' * (self.teachers > 1)} ({layout})"


def grants(name: str, params: dict[str, Any], sources: int, targets: int, tasks: int) -> Grants:
    protocol = PROTOCOLS[name]
    layout = params.get("teachers", protocol.teachers)
    teachers = {"per_source": sources, "union": 1, "per_task": tasks}[layout]
    labels = {"few_shot": "few", "labelled": "all"}.get(protocol.target_data, "none")
    return Grants(
        sources=sources,
        targets=targets,
        target_images=protocol.target_data != "none",
        target_labels=labels,  # type: ignore[arg-type]
        teachers=teachers,
        teacher_layout=layout,
        access=params.get("teacher_access", "features"),
        real_images=protocol.real_images,
    )


@dataclass(frozen=True)
class Needs:
    """What a method needs of a setting.

    teacher: the access it needs (None: it uses no teacher). teachers: `any` number (a
    single-teacher method gets their ensemble view), exactly `one`, `several`, or `tasks`
    (teachers on class subsets). target_labels: `few` (some labelled target images: few-shot
    or all), `all`. oracle: it reads every target label whatever the protocol grants (the
    upper-bound reference row, never ranked). data_free: it learns from images it makes
    itself (a generator against the teacher), so it fits the protocols that grant no real
    image, and only those (where real images are granted, the other methods use them);
    None: it trains on no images at all (the teacher row), so it fits either."""

    teacher: Access | None = "logits"
    teachers: Literal["any", "one", "several", "tasks"] = "any"
    target_images: bool = False
    target_labels: Literal["none", "few", "all"] = "none"
    several_targets: bool = False
    oracle: bool = False
    data_free: bool | None = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def unmet(needs: Needs, granted: Grants) -> str | None:
    """The first thing the method needs that the setting does not grant, in words; None when
    it fits."""
    if needs.data_free is not None and needs.data_free == granted.real_images:
        if needs.data_free:
            return "learns from generated images only; it runs under data_free"
        return "needs real training images; the protocol grants none (the teacher only)"
    if needs.teacher is not None and ACCESS_LEVELS.index(needs.teacher) > ACCESS_LEVELS.index(
        granted.access
    ):
        return f"needs the teacher's {needs.teacher}; the protocol grants its {granted.access} only"
    if needs.teacher is not None:
        if needs.teachers == "one" and granted.teachers != 1:
            return f"needs exactly one teacher; the setting has {granted.teacher_words}"
        if needs.teachers == "several" and granted.teachers < 2:
            return f"needs several teachers; the setting has {granted.teacher_words}"
        if needs.teachers == "tasks" and granted.teacher_layout != "per_task":
            return "needs one teacher per task (multi_task)"
    if needs.target_images and not granted.target_images:
        return "needs unlabelled target images; the protocol grants none"
    if needs.target_labels != "none" and not needs.oracle:
        order = ("none", "few", "all")
        if order.index(needs.target_labels) > order.index(granted.target_labels):
            wanted = "every target label" if needs.target_labels == "all" else "target labels"
            return f"needs {wanted}; the protocol grants {granted.target_labels}"
    if needs.several_targets and granted.targets < 2:
        return "needs several target domains (multi_target)"
    return None
