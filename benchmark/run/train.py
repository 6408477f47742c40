"""The training loop: it sums a method's named loss terms and knows nothing of any method.

Per step it draws one minibatch per domain (`Batch`), asks the method for its loss terms and
takes an optimizer step. Loss values stay on the device; every `LOG_EVERY` steps they are
read once, checked for NaN, shown and handed to the run's tracker, if any (so tracking adds
no sync). After each epoch it measures the selection curves (source and target validation
accuracy, target prediction entropy), keeps the weights of the epoch each selection rule
currently chooses, and writes a checkpoint (network, method, optimizer, scheduler, every
stream's position and every generator's state), so a killed run resumes at its last epoch
and reaches exactly the numbers it would have reached uninterrupted. A run whose loss rose
while it ended at chance accuracy has diverged, even without a NaN, and fails with the
reason.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.data.augment import MIXING, mix
from benchmark.data.setting import Part
from benchmark.data.tensors import Stream, normalize
from benchmark.errors import XdkdError
from benchmark.methods.base import Batch, DomainBatch, Method, Synthetic
from benchmark.methods.teachers import TeacherMemo, Teachers
from benchmark.run.evaluate import predict
from benchmark.run.fastpath import FastPath
from benchmark.run.tracking import Tracker
from benchmark.suite.config import Recipe, policy_of
from benchmark.suite.metrics import chance_bound
from benchmark.suite.selection import RULES

LOG_EVERY = 20  # steps between reads of the loss values (each read is a host sync)
DIVERGED_NLL = 10.0  # validation NLL above this many times log(classes) is divergence


class DivergedError(XdkdError):
    """Training diverged: a loss became NaN or infinite, or rose while accuracy fell to chance."""


def make_optimizer(
    params: list[nn.Parameter], recipe: Recipe, total_steps: int, fused: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The recipe's optimizer and schedule; `fused`: AdamW's one-kernel update (CUDA)."""
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(
            params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=fused or None
        )
    if recipe.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=0.25
        )
    elif recipe.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


@dataclass
class TrainData:
    """What training draws from: labelled sources, unlabelled targets, labelled target
    images (each one stream per domain), and the validation parts the curves are measured on.
    Under data_free none of them: `generated` images per epoch of `image_shape`, which the
    method makes itself."""

    sources: list[Part]
    targets: list[Part] = field(default_factory=list)
    labelled: list[Part] = field(default_factory=list)
    source_val: list[Part] = field(default_factory=list)
    target_val: list[Part] = field(default_factory=list)
    num_classes: int = 10
    generated: int = 0
    image_shape: tuple[int, int, int] = (3, 32, 32)

    def steps_per_epoch(self, batch_size: int) -> int:
        """One epoch sees as many source images as the sources hold (or, data-free, makes
        `generated` images)."""
        if not self.sources:
            return max(1, self.generated // batch_size)
        total = sum(len(p.split) for p in self.sources)
        per_step = sum(min(batch_size, len(p.split)) for p in self.sources)
        return max(1, total // per_step)


class Checkpointer:
    """Where a run's checkpoint lives; the store implements it (`RunStore.checkpointer`)."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class FitResult:
    """Per-epoch curves, the epoch each selection rule chose, the weights of those epochs
    (the last one always), and how training went."""

    curves: dict[str, list[float]]
    selections: dict[str, int]
    states: dict[int, dict[str, torch.Tensor]]
    steps: int
    resumed_epochs: int
    train_seconds: float


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@torch.no_grad()
def validation_curves(network: nn.Module, data: TrainData) -> dict[str, float]:
    """Means over the validation parts there are: source accuracy and NLL, target accuracy
    and mean prediction entropy."""
    values: dict[str, list[float]] = {}
    for kind, parts in (("source", data.source_val), ("target", data.target_val)):
        for part in parts:
            logits, labels = predict(network, part.split)
            values.setdefault(f"{kind}_val_acc", []).append(
                float((logits.argmax(1) == labels).float().mean())
            )
            if kind == "source":
                nll = float(nn.functional.cross_entropy(logits, labels))
                values.setdefault("source_val_nll", []).append(nll)
            else:
                entropy = float(torch.special.entr(logits.softmax(1)).sum(1).mean())
                values.setdefault("target_val_entropy", []).append(entropy)
    return {name: _mean(v) for name, v in values.items()}


def divergence(
    losses: torch.Tensor, accuracy: float, nll: float, num_classes: int, label: str, lr: float
) -> str | None:
    """Why a finished training counts as diverged, or None: it ended at chance accuracy and
    its loss rose from the first tenth of the steps to the last, or its NLL exploded."""
    if not accuracy < chance_bound(num_classes):
        return None
    window = max(1, len(losses) // 10)
    first, last = float(losses[:window].mean()), float(losses[-window:].mean())
    exploded = nll > DIVERGED_NLL * math.log(num_classes)
    if last <= first and not exploded:
        return None
    return (
        f"{label}: training diverged: its loss went from {first:.4g} (first steps) to "
        f"{last:.4g} (last steps), validation NLL {nll:.4g}, and it ended at chance accuracy "
        f"({100 * accuracy:.1f}% for {num_classes} classes); lower the learning rate "
        f"(recipe lr={lr})"
    )


class Batches:
    """One stream per domain over a shared generator; `next(progress)` is a step's Batch.
    Under mixup or cutmix each labelled source minibatch is mixed, its labels becoming class
    probabilities (`benchmark.data.augment.mix`): only the source cross-entropy has labels
    to mix, and every term sees the mixed images."""

    def __init__(
        self, data: TrainData, batch_size: int, generator: torch.Generator, augment: bool | str
    ) -> None:
        self.generator = generator
        self.policy = policy_of(augment)
        self.num_classes = data.num_classes
        self.synthetic = (
            None if data.sources else Synthetic(batch_size, data.image_shape, generator)
        )

        def streams(parts: list[Part]) -> list[tuple[str, Stream]]:
            return [(p.name, Stream(p.split, batch_size, generator, augment)) for p in parts]

        self.sources, self.targets = streams(data.sources), streams(data.targets)
        self.labelled = streams(data.labelled)

    @property
    def all(self) -> list[Stream]:
        return [s for _, s in [*self.sources, *self.targets, *self.labelled]]

    def next(self, progress: float) -> Batch:
        def draw(streams: list[tuple[str, Stream]], labelled: bool) -> list[DomainBatch]:
            out = []
            for name, stream in streams:
                images, labels = next(stream)
                out.append(DomainBatch(name, images, labels if labelled else None))
            return out

        sources = draw(self.sources, True)
        if self.policy in MIXING:
            for source in sources:
                source.images, source.labels = mix(
                    source.images, source.labels, self.num_classes, self.policy, self.generator
                )
        return Batch(
            sources,
            draw(self.targets, False),
            draw(self.labelled, True),
            progress,
            self.synthetic,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "streams": [s.state_dict() for s in self.all],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for stream, saved in zip(self.all, state["streams"], strict=True):
            stream.load_state_dict(saved)
        self.generator.set_state(state["generator"])


def _rng_state() -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _copy(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def train_step(
    method: Method,
    network: nn.Module,
    teachers: Teachers | None,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fast: FastPath,
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimisation step on `batch`: the method's loss terms (forward passes under the
    fast path's precision), their sum's backward pass, the optimizer's and schedule's step.
    Returns the terms and the summed loss, still on the device (no host sync)."""
    with fast.autocast(device):
        terms = method.losses(network, teachers, batch)
        total = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    scheduler.step()
    return terms, total.detach()


class Training:
    """One run's training between its steps: the network, method, optimizer, schedule,
    streams and curves, resumed from `checkpoint` when it holds one. `fit` steps one
    Training to the end; `fit_cohort` steps several in turn. `elapsed`: the seconds spent in
    this run's own calls (and, in a cohort, the teacher work it was handed), so its recorded
    time is what the run costs alone."""

    def __init__(
        self,
        network: nn.Module,
        teachers: Teachers | None,
        method: Method,
        data: TrainData,
        recipe: Recipe,
        generator: torch.Generator,
        label: str,
        checkpoint: Checkpointer | None = None,
        select: bool = True,
        progress: bool = True,
        fast: FastPath | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        self.network, self.teachers, self.method, self.data = network, teachers, method, data
        self.recipe, self.label, self.select = recipe, label, select
        self.checkpoint = checkpoint or Checkpointer()
        self.fast = fast or FastPath()
        self.tracker = tracker or Tracker()
        self.device = generator.device
        self.epoch_steps = data.steps_per_epoch(recipe.batch_size)
        self.total_steps = recipe.epochs * self.epoch_steps
        self.batches = Batches(data, recipe.batch_size, generator, recipe.augment)
        network.train()
        method.label_smoothing = recipe.label_smoothing
        method.setup(network, teachers, self.batches.next(0.0))
        method.train()
        params = [p for p in [*network.parameters(), *method.parameters()] if p.requires_grad]
        self.optimizer, self.scheduler = make_optimizer(
            params, recipe, self.total_steps, self.fast.fused_adamw
        )
        self.curves: dict[str, list[float]] = {}
        self.kept: dict[int, dict[str, torch.Tensor]] = {}
        self.losses = torch.zeros(self.total_steps, device=self.device)
        self.epoch, self.elapsed = 0, 0.0
        saved = self.checkpoint.load()
        if saved is not None:
            self._resume(saved)
        self.resumed = self.epoch
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.epoch * self.epoch_steps,
            desc=label,
            leave=False,
            unit="step",
            mininterval=1.0,
            disable=not progress,
        )
        self.terms: dict[str, torch.Tensor] = {}

    def _resume(self, saved: dict[str, Any]) -> None:
        self.network.load_state_dict(saved["network"])
        self.method.load_state_dict(saved["method"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.batches.load_state_dict(saved["batches"])
        _set_rng_state(saved["rng"])
        self.curves, self.kept, self.epoch = saved["curves"], saved["kept"], saved["epoch"]
        self.losses[: self.epoch * self.epoch_steps] = saved["losses"].to(self.losses.device)
        self.elapsed = saved["elapsed_s"]

    @property
    def finished(self) -> bool:
        return self.epoch >= self.recipe.epochs

    def step(self, step: int) -> None:
        """Training step `step` (counted from the first epoch's first)."""
        started = time.perf_counter()
        batch = self.batches.next(step / self.total_steps)
        lr = self.scheduler.get_last_lr()[0]  # this step's rate, a Python float: no host sync
        terms, self.losses[step] = train_step(
            self.method,
            self.network,
            self.teachers,
            batch,
            self.optimizer,
            self.scheduler,
            self.fast,
            self.device,
        )
        if step % LOG_EVERY == 0:
            read = _check_and_show(
                terms, step, self.total_steps, self.label, self.recipe.lr, self.bar
            )
            self.tracker.log_metrics({**_tagged("train", read), "train/lr": lr}, step)
        self.bar.update(1)
        self.elapsed += time.perf_counter() - started

    def end_epoch(self) -> None:
        """After the current epoch's last step: its NaN check, selection curves, kept weights
        and checkpoint."""
        started = time.perf_counter()
        epoch, steps = self.epoch, self.epoch_steps
        epoch_losses = self.losses[epoch * steps : (epoch + 1) * steps]
        if not bool(torch.isfinite(epoch_losses).all()):
            raise DivergedError(
                f"{self.label}: the loss became NaN or infinite in epoch {epoch + 1}; lower "
                f"the learning rate (recipe lr={self.recipe.lr})"
            )
        curves = self.curves
        _append(curves, "epoch", epoch + 1)
        _append(curves, "loss", float(epoch_losses.mean()))
        measured: dict[str, float] = {}
        if self.select:
            with self.fast.autocast(self.device):
                measured = validation_curves(self.network, self.data)
            for name, value in measured.items():
                _append(curves, name, value)
            wanted = {rule.choose(curves) for rule in RULES.values()} - {None}
            self.kept = {e: s for e, s in self.kept.items() if e in wanted}
            if epoch + 1 in wanted:
                self.kept[epoch + 1] = _copy(self.network)
        epoch_values = {"train/epoch_loss": curves["loss"][-1], **_tagged("val", measured)}
        self.tracker.log_metrics(epoch_values, (epoch + 1) * steps)
        self.network.train()
        self.epoch = epoch + 1
        self.elapsed += time.perf_counter() - started
        self.checkpoint.save(
            {
                "epoch": self.epoch,
                "network": self.network.state_dict(),
                "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "batches": self.batches.state_dict(),
                "rng": _rng_state(),
                "curves": curves,
                "kept": self.kept,
                "losses": self.losses[: self.epoch * steps].cpu(),
                "elapsed_s": self.elapsed,
            }
        )

    def train_epoch(self) -> None:
        for step in range(self.epoch * self.epoch_steps, (self.epoch + 1) * self.epoch_steps):
            self.step(step)
        self.end_epoch()

    def finish(self) -> FitResult:
        """The divergence rule on the trained network, then what training produced."""
        started = time.perf_counter()
        self.bar.close()
        self.network.eval()
        _check_divergence(self.network, self.data, self.losses, self.label, self.recipe)
        self.kept[self.recipe.epochs] = _copy(self.network)
        rules = RULES.items() if self.select else []
        selections = {name: rule.choose(self.curves) for name, rule in rules}
        self.elapsed += time.perf_counter() - started
        return FitResult(
            curves=self.curves,
            selections={k: v for k, v in selections.items() if v is not None},
            states=self.kept,
            steps=self.total_steps,
            resumed_epochs=self.resumed,
            train_seconds=self.elapsed,
        )


def fit(
    network: nn.Module,
    teachers: Teachers | None,
    method: Method,
    data: TrainData,
    recipe: Recipe,
    generator: torch.Generator,
    label: str,
    checkpoint: Checkpointer | None = None,
    select: bool = True,
    progress: bool = True,
    fast: FastPath | None = None,
    tracker: Tracker | None = None,
) -> FitResult:
    """Train `network` with `method` for `recipe.epochs`, resuming from `checkpoint` when it
    holds one. `select`: measure the selection curves after every epoch and keep the chosen
    epochs' weights (students); otherwise only the last weights (teachers). `fast`: the fast
    path's precision and optimizer (the network already in its layout). `tracker` gets the
    loss terms and learning rate each time they are read, and each epoch's curves."""
    return fit_training(
        Training(
            network,
            teachers,
            method,
            data,
            recipe,
            generator,
            label,
            checkpoint,
            select,
            progress,
            fast,
            tracker,
        )
    )


def fit_training(training: Training) -> FitResult:
    """Step one Training alone to its last epoch."""
    while not training.finished:
        training.train_epoch()
    return training.finish()


@dataclass
class CohortMember:
    """A run of a cohort: its Training, built under the global random state its solo run
    would have had, and that state as it stands between its turns (dropout, and any
    method's own draws, read it)."""

    key: str
    training: Training
    rng: dict[str, Any] = field(default_factory=_rng_state)


@contextmanager
def _turn(member: CohortMember, memo: TeacherMemo):
    """The member's random state in, the teacher work it was handed counted as its own,
    its state out."""
    _set_rng_state(member.rng)
    memo.reader = member.key
    try:
        yield
    finally:
        member.rng = _rng_state()
        member.training.elapsed += memo.charged.pop(member.key, 0.0)


def fit_cohort(members: list[CohortMember], memo: TeacherMemo) -> dict[str, FitResult | Exception]:
    """Train the members together, step by step: at each step every member still training
    takes its step in turn, the teachers' answers shared through `memo` (which their
    Teachers views hold), so each member computes exactly what it computes alone. A member
    that fails (NaN, divergence, any error) leaves the cohort with its error and the others
    go on. Members resumed from different epochs catch up in turn: an epoch is stepped by
    the members that have not finished it. Each member's result, or the error it left
    with, by key."""
    outcome: dict[str, FitResult | Exception] = {}
    live = list(members)
    if len({m.training.epoch_steps for m in live}) > 1:
        raise ValueError("a cohort's runs must take the same steps per epoch")

    def attempt(member: CohortMember, work) -> None:
        try:
            with _turn(member, memo):
                work(member.training)
        except Exception as error:  # the member leaves with its error; the cohort goes on
            outcome[member.key] = error
            live.remove(member)

    while live and not all(m.training.finished for m in live):
        epoch = min(m.training.epoch for m in live if not m.training.finished)
        stepping = [m for m in live if m.training.epoch == epoch]
        steps = stepping[0].training.epoch_steps
        for step in range(epoch * steps, (epoch + 1) * steps):
            memo.new_step()
            for member in [m for m in stepping if m in live]:
                attempt(member, lambda t, step=step: t.step(step))
        for member in [m for m in stepping if m in live]:
            attempt(member, Training.end_epoch)
    memo.new_step()
    for member in list(live):
        try:
            with _turn(member, memo):
                outcome[member.key] = member.training.finish()
        except Exception as error:
            outcome[member.key] = error
    return outcome


def _append(curves: dict[str, list[float]], name: str, value: float) -> None:
    curves.setdefault(name, []).append(value)


def _tagged(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": value for name, value in values.items()}


def _check_and_show(
    terms: dict[str, torch.Tensor], step: int, total: int, label: str, lr: float, bar: tqdm
) -> dict[str, float]:
    """One host sync: read every term, fail on NaN or infinity, show them on the bar;
    the values read."""
    read = torch.stack([t.detach().float() for t in terms.values()]).tolist()
    values = dict(zip(terms, read, strict=True))
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise DivergedError(
            f"{label}: loss '{bad[0]}' became {values[bad[0]]} at step {step} of {total}; "
            f"lower the learning rate (recipe lr={lr})"
        )
    bar.set_postfix({name: f"{value:.3f}" for name, value in values.items()}, refresh=False)
    return values


def _check_divergence(
    network: nn.Module, data: TrainData, losses: torch.Tensor, label: str, recipe: Recipe
) -> None:
    """The divergence rule on the trained network, on source validation images (or, without
    them, on one source training batch). A data-free run has no labelled image to judge it
    by: only the NaN check of every epoch holds there."""
    if not (data.source_val or data.sources):
        return
    if data.source_val:
        measured = validation_curves(network, TrainData(sources=[], source_val=data.source_val))
        accuracy, nll = measured["source_val_acc"], measured["source_val_nll"]
    else:
        part = data.sources[0].split
        images, labels = next(iter(part.in_order(min(512, len(part)))))
        with torch.no_grad():
            logits = network(normalize(images)).float()
        accuracy = float((logits.argmax(1) == labels).float().mean())
        nll = float(nn.functional.cross_entropy(logits, labels))
    reason = divergence(losses.cpu(), accuracy, nll, data.num_classes, label, recipe.lr)
    if reason:
        raise DivergedError(reason)
