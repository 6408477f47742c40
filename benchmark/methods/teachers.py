"""A run's teachers, as a method sees them: a named collection with an ensemble view, read
through the access the protocol grants.

`Teachers(images)` is the ensemble's logits: the mean of the teachers' logits (Hinton et al.
2015 distil from an ensemble this way), each teacher's classes placed in the student's class
space when the teachers learnt class subsets (the mean over the teachers that know a class);
a single-teacher method therefore distils from the ensemble under `multi_source` or
`multi_task` without knowing it. `probabilities` is the mean of the teachers' probabilities
(the view a set of black boxes offers), `outputs` one teacher's stage and pooled features,
`module` its weights.

Access is enforced, not promised: under `teacher_access: probabilities` the collection
answers `probabilities` and nothing else, under `logits` no features or weights. The
networks are held in a closure, not in an attribute a method could read, and every call runs
without gradients on teachers kept frozen in eval mode.

Runs trained together as a cohort (`benchmark.run.train.fit_cohort`) share one `TeacherMemo`:
a teacher's logits or features on a step's images are computed once, by the first member
that asks, and handed to every member that asks for them on equal images, so a cohort runs
each teacher once per batch instead of once per method (FKD, Shen & Xing, ECCV 2022, store
soft labels once for the same reason).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.errors import XdkdError
from benchmark.models.features import ModelOutputs, forward_outputs
from benchmark.suite.protocols import ACCESS_LEVELS


class TeacherAccessError(XdkdError):
    """A method asked a teacher for more than the protocol grants."""


@dataclass(frozen=True)
class Member:
    """One teacher: its name (source domain or task), frozen network, and the student class
    of each of its outputs (None: the student's numbering)."""

    name: str
    model: nn.Module
    columns: list[int] | None = None


def freeze(model: nn.Module) -> nn.Module:
    """A teacher is never updated: eval mode (BatchNorm statistics fixed), no gradients."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _placed(values: list[torch.Tensor], columns: list[list[int] | None], classes: int):
    """Each teacher's (B, its classes) values in the student's columns; the mean over the
    teachers that have a column."""
    if all(c is None for c in columns):
        return torch.stack(values).mean(0)
    total = values[0].new_zeros(values[0].shape[0], classes)
    count = values[0].new_zeros(classes)
    for value, cols in zip(values, columns, strict=True):
        index = (
            torch.arange(classes, device=value.device)
            if cols is None
            else torch.tensor(cols, device=value.device)
        )
        total[:, index] += value
        count[index] += 1
    return total / count.clamp_min(1)


@dataclass
class _Memoised:
    images: torch.Tensor
    value: object
    seconds: float


@dataclass
class TeacherMemo:
    """The teachers' answers of one cohort step, shared by its members (module docstring).

    An answer is reused only for images equal, element for element, to those it was
    computed on, so a member reads exactly what its own forward would have computed (the
    teacher is frozen and deterministic); a member whose images differ (its own second
    view, its own draws) computes its own. Logits are served from a features pass on the
    same images once the two are seen to be bit-identical for that teacher (`same_logits`,
    checked the first time both were computed), so a cohort of logit and feature methods
    runs one teacher pass per batch. `charged`: seconds of teacher work each member was
    handed without computing it, so a member's recorded training time is what the run costs
    alone. The members must not change a teacher's answer in place."""

    entries: dict[tuple[str, str], list[_Memoised]] = field(default_factory=dict)
    same_logits: dict[str, bool] = field(default_factory=dict)
    reader: str = ""
    charged: dict[str, float] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def new_step(self) -> None:
        self.entries.clear()

    def answer(self, name: str, view: str, model: nn.Module, images: torch.Tensor) -> object:
        """Teacher `name`'s `view` (logits or outputs) of `images`, computed or reused."""
        kept = self._find(name, view, images)
        if kept is not None:
            return self._hit(kept)
        if view == "logits" and self.same_logits.get(name):
            features = self._find(name, "outputs", images)
            if features is not None:
                return self._hit(features).logits
            return self._compute(name, "outputs", model, images).logits
        value = self._compute(name, view, model, images)
        other = self._find(name, "logits" if view == "outputs" else "outputs", images)
        if other is not None and name not in self.same_logits:
            pair = (value, other.value) if view == "logits" else (other.value, value)
            self.same_logits[name] = torch.equal(pair[0], pair[1].logits)
        return value

    def _find(self, name: str, view: str, images: torch.Tensor) -> _Memoised | None:
        for entry in self.entries.get((name, view), []):
            if _equal(entry.images, images):
                return entry
        return None

    def _hit(self, entry: _Memoised) -> object:
        self.hits += 1
        self.charged[self.reader] = self.charged.get(self.reader, 0.0) + entry.seconds
        return entry.value

    def _compute(self, name: str, view: str, model: nn.Module, images: torch.Tensor) -> object:
        started = time.perf_counter()
        value = forward_outputs(model, images) if view == "outputs" else model(images)
        entry = _Memoised(images, value, time.perf_counter() - started)
        self.entries.setdefault((name, view), []).append(entry)
        self.misses += 1
        return value


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a is b:
        return True
    same_kind = a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    return same_kind and torch.equal(a, b)


class Teachers:
    """The teachers of one run (see the module docstring); `memo`: the cohort's, if the run
    trains in one."""

    def __init__(
        self,
        members: list[Member],
        num_classes: int,
        access: str = "features",
        memo: TeacherMemo | None = None,
    ) -> None:
        if access not in ACCESS_LEVELS:
            raise ValueError(f"unknown teacher access '{access}'")
        self.names = [m.name for m in members]
        self.num_classes = num_classes
        self.access = access
        self._columns = [m.columns for m in members]
        self._forward: Callable[[str, str, torch.Tensor], object] = _closure(members, memo)

    def __len__(self) -> int:
        return len(self.names)

    def columns(self, name: str) -> list[int]:
        """The student class of each of a teacher's outputs (all classes, in order, for a
        teacher of the whole family)."""
        cols = self._columns[self.names.index(self._name(name))]
        return list(range(self.num_classes)) if cols is None else list(cols)

    def _allow(self, needed: str, what: str) -> None:
        if ACCESS_LEVELS.index(needed) > ACCESS_LEVELS.index(self.access):
            raise TeacherAccessError(
                f"this run grants the teacher's {self.access} only (teacher_access: "
                f"{self.access}); a method may not read its {what}"
            )

    def _name(self, name: str | None) -> str:
        if name is None:
            if len(self.names) != 1:
                raise TeacherAccessError(
                    f"this run has {len(self.names)} teachers ({', '.join(self.names)}); "
                    "name one, or use the ensemble's logits or probabilities"
                )
            return self.names[0]
        if name not in self.names:
            raise KeyError(f"no teacher '{name}'; the teachers are {', '.join(self.names)}")
        return name

    # --- views -----------------------------------------------------------------------------

    def member_logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each teacher's logits over its own classes."""
        self._allow("logits", "logits")
        return {name: self._forward(name, "logits", images) for name in self.names}

    def member_probabilities(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each teacher's class probabilities over its own classes."""
        return {name: self._forward(name, "probabilities", images) for name in self.names}

    def place(self, values: dict[str, torch.Tensor], fill: float) -> torch.Tensor:
        """Each teacher's (B, its classes) values in the student's columns, `fill` in the
        columns it does not know: one (teachers, B, classes) tensor, in `names` order."""
        first = next(iter(values.values()))
        placed = first.new_full((len(values), first.shape[0], self.num_classes), fill)
        for index, (name, value) in enumerate(values.items()):
            placed[index, :, torch.tensor(self.columns(name), device=value.device)] = value
        return placed

    def combine(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The ensemble rule on values already computed (each teacher's logits): the mean
        over the teachers that know each class, in the student's class space."""
        return _placed(list(values.values()), self._columns, self.num_classes)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The ensemble's logits in the student's class space."""
        return self.combine(self.member_logits(images))

    __call__ = logits

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """The mean of the teachers' probabilities in the student's class space (rows sum to
        1 again where the teachers know different classes)."""
        per_teacher = list(self.member_probabilities(images).values())
        placed = _placed(per_teacher, self._columns, self.num_classes)
        return placed / placed.sum(1, keepdim=True)

    def outputs(self, images: torch.Tensor, name: str | None = None) -> ModelOutputs:
        """One teacher's stage features, pooled features and logits."""
        self._allow("features", "features")
        return self._forward(self._name(name), "outputs", images)

    def module(self, name: str | None = None) -> nn.Module:
        """One teacher's frozen network itself (white box: weights and architecture)."""
        self._allow("features", "weights")
        return self._forward(self._name(name), "module", None)

    def forward_intermediates(self, *args, **kwargs):
        raise TeacherAccessError(
            "use teachers.outputs(images) for a teacher's features (where the protocol grants them)"
        )


def _closure(
    members: list[Member], memo: TeacherMemo | None
) -> Callable[[str, str, torch.Tensor | None], object]:
    """A function answering (teacher, view, images): the networks live only in here.
    Probabilities are the softmax of the logits, so with a memo they reuse its logits."""
    models = {m.name: m.model for m in members}

    def computed(name: str, view: str, images: torch.Tensor) -> object:
        model = models[name]
        if memo is not None:
            return memo.answer(name, view, model, images)
        return forward_outputs(model, images) if view == "outputs" else model(images)

    @torch.no_grad()  # not inference mode: its tensors would need a copy to enter a loss
    def forward(name: str, view: str, images: torch.Tensor | None):
        if view == "module":
            return models[name]
        if view == "outputs":
            return computed(name, "outputs", images)
        logits = computed(name, "logits", images)
        return logits.softmax(1) if view == "probabilities" else logits

    return forward


class EnsembleNetwork(nn.Module):
    """The teachers' ensemble as one network (mean logits in the student's class space), for
    evaluating the `teacher` reference row with the code that evaluates students."""

    def __init__(self, members: list[Member], num_classes: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(m.model for m in members)
        self.columns = [m.columns for m in members]
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        values = [model(images) for model in self.members]
        return _placed(values, self.columns, self.num_classes)
