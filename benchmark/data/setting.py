"""What one run trains on and is scored on: the splits its setting grants, cut and numbered.

Every domain's train split is cut into `train` and a seeded stratified `val` share (source
and target validation; in-domain runs validate on the source's). On top of that a setting
takes:

- tasks (`multi_task`): each task's images of its classes only, numbered in the student's
  class space, the union of the tasks' classes in the family's order (a teacher numbers its
  own classes in the task's order);
- few shots (`few_shot`): k labelled images per class of the target's train part, drawn with
  a generator named by the seed and the target alone, so every method of a seed gets the
  same images and a smaller k takes a subset of a larger one's; the unlabelled target images
  are the rest.

`saw()` says what training used; `check_setting_data` refuses a setting its data cannot
serve (more shots than a class has images) before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.data.provider import Split, SplitProvider
from benchmark.errors import XdkdError
from benchmark.seeding import name_seed
from benchmark.suite.config import TaskSpec
from benchmark.suite.families import domain_info, family_domains
from benchmark.suite.protocols import PROTOCOLS
from benchmark.suite.specs import RunSpec, Setting, TeacherSpec


@dataclass(frozen=True)
class Part:
    """A split a run uses, and the domain (or task) it stands for."""

    name: str
    domain: str
    split: Split


def class_space(setting: Setting) -> list[str]:
    """The classes the student predicts: the union of the tasks' (in the family's order), or
    every class of the family."""
    family_classes = list(domain_info(setting.targets[0]).classes)
    if not setting.tasks:
        return family_classes
    wanted = {name for task in setting.tasks for name in task.classes}
    return [name for name in family_classes if name in wanted]


def numbering(domain: str, classes: list[str]) -> np.ndarray:
    """Family label -> position in `classes` (-1 where the class is not among them)."""
    family_classes = domain_info(domain).classes
    lookup = np.full(len(family_classes), -1, dtype=np.int64)
    for position, name in enumerate(classes):
        lookup[family_classes.index(name)] = position
    return lookup


def few_shot_rows(labels: np.ndarray, shots: int, seed: int, target: str) -> np.ndarray:
    """`shots` rows of every class, the first of a per-class permutation named by (seed,
    target): sorted, nested over `shots`."""
    rng = np.random.default_rng(name_seed(f"{seed}/few-shot/{target}"))
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def cut(
    provider: SplitProvider,
    domain: str,
    part: str,
    size: int,
    share: float,
    keep: list[str] | None = None,
    space: list[str] | None = None,
    rows: np.ndarray | None = None,
) -> Split:
    """A domain's part, optionally only at `rows` of it, kept to the classes `keep` and
    numbered by their position in `space` (both None: every class, the family's numbering)."""
    split = provider.split(domain, part, size, share)
    if keep is None and rows is None:
        return split
    labels = provider.labels(domain, part, size, share)
    chosen = np.arange(len(labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    if keep is None:
        return split.select(chosen)
    chosen = chosen[numbering(domain, keep)[labels[chosen]] >= 0]
    return split.select(chosen, numbering(domain, space or keep)[labels[chosen]])


def teacher_parts(provider: SplitProvider, teacher: TeacherSpec, part: str) -> list[Part]:
    """A teacher's `train`, `val` or `test` parts: each of its sources, kept to its classes
    and numbered in their order."""
    share = teacher.source_validation
    return [
        Part(s, s, cut(provider, s, part, teacher.image_size, share, teacher.classes))
        for s in teacher.sources
    ]


Item = tuple[str, str, TaskSpec | None]  # (name, domain, task)


class RunSplits:
    """The parts of one run, cut from the provider's splits (which are shared across runs)."""

    def __init__(self, provider: SplitProvider, spec: RunSpec) -> None:
        self.provider = provider
        self.spec = spec
        self.setting = spec.setting
        self.classes = class_space(spec.setting)
        self.size = spec.image_size
        self.protocol = self.setting.protocol.name
        declared = PROTOCOLS[self.protocol]
        self.in_domain = declared.targets == "source"  # scored on its source (and the rest)
        self.real_images = declared.real_images

    def _part(self, item: Item, part: str, share: float, rows: np.ndarray | None = None) -> Part:
        """An item's part numbered in the student's class space, kept to the task's classes
        (to the union of the tasks' for a task suite's other domains)."""
        name, domain, task = item
        keep = space = None
        if self.setting.tasks:
            keep, space = (task.classes if task else self.classes), self.classes
        return Part(
            name, domain, cut(self.provider, domain, part, self.size, share, keep, space, rows)
        )

    def items(self) -> list[Item]:
        """Everything the run is scored on one by one: each task, or each target domain."""
        if self.setting.tasks:
            return [(t.name, t.target_domain, t) for t in self.setting.tasks]
        return [(target, target, None) for target in self.setting.targets]

    def _source_items(self) -> list[Item]:
        if self.setting.tasks:
            return [(t.name, t.source, t) for t in self.setting.tasks]
        return [(source, source, None) for source in self.setting.sources]

    # --- training ------------------------------------------------------------------------

    def sources(self) -> list[Part]:
        """Labelled source training images: none under data_free (the teacher only)."""
        share = self.spec.source_validation
        if not self.real_images:
            return []
        return [self._part(item, "train", share) for item in self._source_items()]

    def source_val(self) -> list[Part]:
        """Source validation images for the selection curves: none under data_free, where
        no real image may steer training, the choice of epoch included (rule `last`)."""
        share = self.spec.source_validation
        if not (share and self.real_images):
            return []
        return [self._part(item, "val", share) for item in self._source_items()]

    def generated_per_epoch(self) -> int:
        """Under data_free, how many images an epoch generates: as many as the source's
        training part holds (what an epoch of its real images would be); else 0."""
        if self.real_images:
            return 0
        share = self.spec.source_validation
        return int(
            sum(
                len(self.provider.labels(d, "train", self.size, share))
                for _, d, _ in self._source_items()
            )
        )

    def target_val(self) -> list[Part]:
        if self.in_domain:
            return self.source_val()
        share = self.spec.target_validation
        return [self._part(item, "val", share) for item in self.items()] if share else []

    def _shots(self, domain: str) -> np.ndarray:
        labels = self.provider.labels(domain, "train", self.size, self.spec.target_validation)
        shots = self.setting.protocol.params["shots"]
        return few_shot_rows(labels, shots, self.spec.seed, domain)

    def targets(self) -> list[Part]:
        """Unlabelled target training images (labels are hidden from methods): none where
        the protocol grants none, the rest after the shots under few_shot."""
        if self.in_domain or self.protocol == "zero_shot":
            return []
        share = self.spec.target_validation
        parts = []
        for item in self.items():
            rows = None
            if self.protocol == "few_shot":
                count = len(self.provider.labels(item[1], "train", self.size, share))
                rows = np.setdiff1d(np.arange(count), self._shots(item[1]))
            parts.append(self._part(item, "train", share, rows))
        return parts

    def labelled_target(self, oracle: bool) -> list[Part]:
        """Labelled target images: the shots (few_shot), every target image (labelled_target,
        or for an oracle under any protocol with target images), else none."""
        if self.in_domain or self.protocol == "zero_shot":
            return []
        share = self.spec.target_validation
        if self.protocol == "labelled_target" or oracle:
            return [self._part(item, "train", share) for item in self.items()]
        if self.protocol == "few_shot":
            return [self._part(item, "train", share, self._shots(item[1])) for item in self.items()]
        return []

    def teacher_columns(self, teacher: TeacherSpec) -> list[int] | None:
        """The student class of each of a teacher's outputs (None: the same numbering)."""
        return None if teacher.classes is None else [self.classes.index(c) for c in teacher.classes]

    # --- scoring -------------------------------------------------------------------------

    def scored_test(self) -> list[Part]:
        """The test split of each target (or task), numbered in the student's class space."""
        return [self._part(item, "test", 0.0) for item in self.items()]

    def source_test(self) -> list[Part]:
        return [self._part(item, "test", 0.0) for item in self._source_items()]

    def heldout_test(self, heldout: list[str] | None) -> list[Part]:
        """Every other domain of the family of the target's kind (embedded with embedded,
        published with published), or the suite's `heldout` list; a task suite's held-out
        domains are kept to the union of its classes."""
        used = {*self.setting.sources, *self.setting.targets}
        if heldout is None:
            target = domain_info(self.setting.targets[0])
            heldout = [
                d
                for d in family_domains(target.family)
                if domain_info(d).embedded == target.embedded
            ]
        return [self._part((d, d, None), "test", 0.0) for d in heldout if d not in used]

    def robustness_labels(self, item: Item) -> tuple[np.ndarray | None, np.ndarray]:
        """(test indices an item's robustness set may use, the student's label of every test
        index) for a scored item."""
        _, domain, task = item
        labels = self.provider.labels(domain, "test", self.size)
        if not self.setting.tasks:
            return None, labels
        lookup = numbering(domain, self.classes)
        keep = numbering(domain, task.classes)
        return np.flatnonzero(keep[labels] >= 0), lookup[labels]

    def saw(self, oracle: bool) -> dict:
        """What training used: domains, tasks, classes and how many images of each kind."""
        count = lambda parts: int(sum(len(p.split) for p in parts))  # noqa: E731
        return {
            "protocol": self.setting.protocol.label,
            "sources": self.setting.sources,
            "targets": self.setting.targets,
            "tasks": [t.model_dump(mode="json") for t in self.setting.tasks],
            "classes": self.classes,
            "source_images": count(self.sources()),
            "unlabelled_target_images": count(self.targets()),
            "labelled_target_images": count(self.labelled_target(oracle)),
            "source_validation_images": count(self.source_val()),
            "target_validation_images": count(self.target_val()),
            **(
                {}
                if self.real_images
                else {"generated_images_per_epoch": self.generated_per_epoch()}
            ),
        }


def check_setting_data(provider: SplitProvider, spec: RunSpec) -> None:
    """Refuse, before training, a setting the data cannot serve."""
    setting = spec.setting
    if setting.protocol.name != "few_shot":
        return
    shots = setting.protocol.params["shots"]
    for target in setting.targets:
        labels = provider.labels(target, "train", spec.image_size, spec.target_validation)
        classes, counts = np.unique(labels, return_counts=True)
        fewest = int(counts.min())
        if fewest < shots:
            name = domain_info(target).classes[int(classes[counts.argmin()])]
            raise XdkdError(
                f"few_shot shots={shots}: class '{name}' of {target} has {fewest} training "
                f"images (after the target validation share); choose shots <= {fewest}"
            )
