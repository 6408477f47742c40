"""Hyperparameter search spaces and their draws (DomainBed's random search, Gulrajani &
Lopez-Paz, ICLR 2021): each method declares, beside its defaults, a distribution for every
parameter worth searching; a suite's `search:` gives every method the same number of draws.

Each parameter of each draw has its own seed, from the search seed, the method's row, the
setting, the trial and the parameter's name (`name_seed`), so adding a method, a setting or a
parameter moves no other draw. Torch-free: methods declare spaces with the constructors here,
the catalogue carries them as data (`as_dict`), suites override them in YAML
(`{log_uniform: [1, 8]}`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from benchmark.seeding import name_seed

KINDS = ("log_uniform", "uniform", "int_uniform", "choice")
SIGNIFICANT = 4  # a drawn number keeps 4 significant digits: readable keys and tables


@dataclass(frozen=True)
class Distribution:
    """One parameter's search distribution: `kind` of KINDS over `values` ((low, high), or the
    choices); `why`: the paper or reason for the range."""

    kind: str
    values: tuple[Any, ...]
    why: str = ""

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return self.values[rng.randrange(len(self.values))]
        low, high = self.values
        if self.kind == "int_uniform":
            return rng.randint(low, high)
        if self.kind == "log_uniform":
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return float(f"{value:.{SIGNIFICANT}g}")

    @property
    def log_scale(self) -> bool:
        return self.kind == "log_uniform"

    def text(self) -> str:
        """`log-uniform [1, 8]`, `choice {a, b}`: how listings show it."""
        name = self.kind.replace("_", "-")
        if self.kind == "choice":
            return f"{name} {{{', '.join(map(str, self.values))}}}"
        return f"{name} [{self.values[0]:g}, {self.values[1]:g}]"

    def as_dict(self) -> dict[str, Any]:
        return {self.kind: list(self.values), **({"why": self.why} if self.why else {})}


def log_uniform(low: float, high: float, why: str = "") -> Distribution:
    return Distribution("log_uniform", (low, high), why)


def uniform(low: float, high: float, why: str = "") -> Distribution:
    return Distribution("uniform", (low, high), why)


def int_uniform(low: int, high: int, why: str = "") -> Distribution:
    return Distribution("int_uniform", (low, high), why)


def choice(values: list[Any], why: str = "") -> Distribution:
    return Distribution("choice", tuple(values), why)


# The student recipe's optimiser settings, searched for every method alike (DomainBed searches
# learning rate and weight decay for every algorithm): a decade either side of the suite's
# AdamW defaults (2e-3, 5e-4), where the embedded digit domains trained in the recipe's tuning.
RECIPE_SPACE: dict[str, Distribution] = {
    "lr": log_uniform(5e-4, 5e-3, "AdamW one-cycle peak; the suite's default 2e-3 in the middle"),
    "weight_decay": log_uniform(1e-5, 1e-3, "around the default 5e-4, as DomainBed's range"),
}


def parse(raw: Any) -> Distribution:
    """A distribution from its data form (`{log_uniform: [1, 8], why: ...}`); ValueError
    saying what is wrong."""
    if isinstance(raw, Distribution):
        return raw
    kinds = [k for k in raw if k in KINDS] if isinstance(raw, dict) else []
    extra = [k for k in raw if k not in (*KINDS, "why")] if isinstance(raw, dict) else []
    if len(kinds) != 1 or extra:
        raise ValueError(
            f"{raw!r} is not a distribution: give one of {', '.join(KINDS)}, "
            "e.g. {log_uniform: [1, 8]}"
        )
    kind = kinds[0]
    values = raw[kind]
    if not isinstance(values, list | tuple):
        raise ValueError(f"{kind} takes a list, e.g. {{{kind}: [1, 8]}}")
    return Distribution(kind, tuple(values), str(raw.get("why", "")))


def problem(distribution: Distribution, default: Any) -> str | None:
    """Why a distribution cannot be sampled for a parameter whose default is `default`, or
    None: an empty or reversed range, a log range through zero, a whole-number parameter
    searched over fractions, a choice of values the parameter cannot take."""
    kind, values = distribution.kind, distribution.values
    number = lambda v: isinstance(v, int | float) and not isinstance(v, bool)  # noqa: E731
    if kind == "choice":
        if not values:
            return "choice has no values"
        if len({repr(v) for v in values}) < len(values):
            return "choice lists a value twice"
        for value in values:
            if type(value) is not type(default) and not (
                isinstance(default, float) and number(value)
            ):
                return f"choice value {value!r} is not of the default's type ({default!r})"
        return None
    if len(values) != 2 or not all(number(v) for v in values):
        return f"{kind} needs two numbers [low, high], got {list(values)}"
    low, high = values
    if not low < high:
        return f"{kind} [{low}, {high}] is an empty range: give low < high"
    if kind == "log_uniform" and low <= 0:
        return f"log_uniform [{low}, {high}] cannot be sampled: a log range needs low > 0"
    if isinstance(default, bool) or not number(default):
        return f"a {kind} range for a parameter whose default is {default!r}: use choice"
    if kind == "int_uniform" and not all(isinstance(v, int) for v in values):
        return f"int_uniform needs whole numbers, got {list(values)}"
    if isinstance(default, int) and kind != "int_uniform":
        return f"the parameter is a whole number (default {default}): use int_uniform"
    return None


def draw(
    space: dict[str, Distribution], seed: int, method: str, setting: str, trial: int
) -> dict[str, Any]:
    """Trial `trial`'s values of every parameter of `space`, each from its own stream."""
    stream = lambda name: random.Random(name_seed(f"{seed}/{method}/{setting}/{trial}/{name}"))  # noqa: E731
    return {name: space[name].sample(stream(name)) for name in sorted(space)}
