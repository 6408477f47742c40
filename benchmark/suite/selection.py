"""Model-selection rules: which epoch of a run a table reports, chosen from the run's curves.

One small rule each (DomainBed's `SelectionMethod`), applied to the per-epoch curves every
record carries, so a table can use any rule without training again. Training keeps the
weights of the epoch each rule chooses (and the last), so every rule's choice has full
metrics. `oracle` looks at target labels (a held-out share of the target's training images)
and is flagged wherever it is used: it is there to compare with papers that select on the
target, never to rank methods by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SelectionRule:
    name: str
    caption: str  # what a table's caption says
    curve: str | None  # the per-epoch curve it reads; None: the last epoch
    best: Literal["max", "min"] = "max"
    oracle: bool = False

    def choose(self, curves: dict[str, list[float]]) -> int | None:
        """The 1-based epoch this rule picks (the first best), or None without its curve."""
        epochs = len(curves.get("epoch", []))
        if self.curve is None:
            return epochs or None
        values = [v for v in curves.get(self.curve, []) if v == v]  # NaN: not measured
        if not values or len(values) != epochs:
            return None
        target = max(values) if self.best == "max" else min(values)
        return values.index(target) + 1

    @property
    def scored_curve(self) -> str:
        """The curve a search's draws are compared on: the rule's own, and for `last`
        (no curve) source validation at the last epoch."""
        return self.curve or "source_val_acc"

    def score(self, curves: dict[str, list[float]]) -> float:
        """The validation value at this rule's chosen epoch (NaN without one): what picks a
        search's draw (DomainBed: the same rule chooses the epoch and the hyperparameters)."""
        epoch = self.choose(curves)
        values = curves.get(self.scored_curve, [])
        return values[epoch - 1] if epoch and len(values) >= epoch else float("nan")


RULES: dict[str, SelectionRule] = {
    rule.name: rule
    for rule in (
        SelectionRule("last", "last epoch (no model selection)", None),
        SelectionRule(
            "source-val",
            "training-domain validation (the epoch with the best source-validation accuracy)",
            "source_val_acc",
        ),
        SelectionRule(
            "target-entropy",
            "unsupervised: the epoch with the lowest mean prediction entropy on unlabelled "
            "target validation images (Morerio et al. ICLR 2018)",
            "target_val_entropy",
            best="min",
        ),
        SelectionRule(
            "oracle",
            "ORACLE: the epoch with the best accuracy on labelled target validation images "
            "(reads target labels; for comparison with papers that select on the target, "
            "not a fair ranking)",
            "target_val_acc",
            oracle=True,
        ),
    )
}
DEFAULT_RULE = "source-val"


UNDER_TRAINED_SHARE = 0.2  # the last fifth of training
UNDER_TRAINED_POINTS = 0.5  # what source validation may still gain there (a tie's size)


def under_trained(curves: dict[str, list[float]]) -> bool:
    """Whether a run's source-validation accuracy was still rising over the last fifth of its
    training: its last value more than UNDER_TRAINED_POINTS above the curve at 80% of the
    epochs (linear between epochs). Such a run's budget is short of convergence, and where
    it lands depends on when training stopped. False without two points of the curve."""
    values = curves.get("source_val_acc", [])
    epochs = curves.get("epoch", [])
    if len(values) < 2 or len(values) != len(epochs) or any(v != v for v in values):
        return False
    at = (1 - UNDER_TRAINED_SHARE) * epochs[-1]
    before = next(i for i in range(len(epochs) - 1, -1, -1) if epochs[i] <= at or i == 0)
    after = min(before + 1, len(epochs) - 1)
    span = epochs[after] - epochs[before]
    weight = 0.0 if span == 0 else max(0.0, min(1.0, (at - epochs[before]) / span))
    then = values[before] + weight * (values[after] - values[before])
    return 100 * (values[-1] - then) > UNDER_TRAINED_POINTS
