"""What a suite expands into, and what it is refused for.

`check_suite` checks what the fields mean together: repeats (with both positions), domains
and families, tasks and their classes, and that every pair, protocol and method fits
something. Expansion turns each entry of `pairs` (or the suite's `tasks`) under each
protocol that fits it into a `Setting`, then every setting x teacher x student x method x
seed into a `RunSpec`, keeping a method only where the setting grants what it needs
(`benchmark.suite.protocols.unmet`); what is left out is said in a note, and what fits nothing
stops the suite before any teacher trains. A suite's `grid` (ShiftKD's data and
optimisation factors as axes) expands each cell of its product as a suite of its own, its
runs marked with the cell (`MethodSpec.grid`). Torch-free: the method declarations come
from the catalogue.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from benchmark.errors import XdkdError
from benchmark.suite.catalogue import Catalogue
from benchmark.suite.config import (
    REFERENCES,
    MethodSpec,
    ProtocolSpec,
    SeedPlan,
    Suite,
    grid_label,
    parameter_problem,
)
from benchmark.suite.families import domain_info
from benchmark.suite.protocols import PROTOCOLS, Grants, Needs, grants, unmet
from benchmark.suite.search import RECIPE_SPACE, Distribution, draw, parse, problem
from benchmark.suite.specs import RunSpec, Setting
from benchmark.suite.yaml_text import Location, first_problem, set_value


class SuiteProblem(XdkdError):
    """A mistake at a location of the suite (`("pairs", 2, "source")`)."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


def _first_repeat(items: list[Any]) -> tuple[int, int] | None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item in seen:
            return seen[item], index
        seen[item] = index
    return None


def _no_repeats(field_name: str, items: list[Any], shown: list[str], fix: str) -> None:
    repeat = _first_repeat(items)
    if repeat:
        first, again = repeat
        raise SuiteProblem(
            (field_name, again),
            f"repeats {field_name}.{first} ({shown[again]}); {fix}",
        )


def check_suite(suite: Suite, known: Catalogue) -> None:
    """Everything one field cannot check alone: repeats, domains, families, tasks and that
    every pair, protocol and method fits something."""
    dump = lambda m: json.dumps(m.model_dump(mode="json"), sort_keys=True)  # noqa: E731
    _no_repeats("seeds", suite.first_seeds, list(map(str, suite.first_seeds)), "remove it")
    _no_repeats(
        "teachers", [dump(t) for t in suite.teachers], [t.name for t in suite.teachers], "remove it"
    )
    _no_repeats(
        "students", [dump(s) for s in suite.students], [s.name for s in suite.students], "remove it"
    )
    _no_repeats(
        "protocol",
        [p.label for p in suite.protocol],
        [p.label for p in suite.protocol],
        "remove it",
    )
    methods = suite.methods
    _no_repeats(
        "methods",
        [json.dumps([m.name, m.params], sort_keys=True) for m in methods],
        [m.row for m in methods],
        "remove it (the same method with the same parameters)",
    )
    _no_repeats(
        "methods",
        [m.row for m in methods],
        [m.row for m in methods],
        "give one of them its own row name: {name: ..., params: ..., label: my_name}",
    )
    rows = [m.row for m in methods]
    for index, control in enumerate(suite.controls):
        if control.method is not None and control.method not in rows:
            raise SuiteProblem(
                ("controls", index, "method"),
                f"method '{control.method}' is not one of the suite's methods "
                f"({', '.join(rows)}); name one of them",
            )
    _check_seed_plan(suite, rows)
    _check_search(suite, known)
    _check_domains(suite)
    settings_of_suite(suite)  # every pair and task set fits a protocol
    expand_runs(suite, known)  # every method fits a setting


def _check_seed_plan(suite: Suite, rows: list[str]) -> None:
    """A seed plan's key comparison is between two rows the suite has."""
    plan = suite.seeds
    if not isinstance(plan, SeedPlan):
        return
    references = [r for r in REFERENCES if r in rows]
    if not references:
        raise SuiteProblem(
            ("seeds",),
            "adding seeds until an interval is narrow needs a comparison: add kd or "
            "source_only to methods, or give seeds as a list",
        )
    for field_name, named, allowed in (
        ("against", plan.against, references),
        ("method", plan.method, [r for r in rows if r not in (plan.against, "teacher")]),
    ):
        if named is not None and named not in allowed:
            raise SuiteProblem(
                ("seeds", field_name),
                f"'{named}' is not one of the suite's methods it can compare "
                f"({', '.join(allowed)}); name one of them",
            )


def _check_search(suite: Suite, known: Catalogue) -> None:
    """A search names the suite's methods and their parameters, with distributions that can
    be sampled for them; the methods' own declared spaces are checked too (a plug-in's)."""
    plan = suite.search
    if plan is None:
        return
    if suite.grid:
        raise SuiteProblem(("search",), "search and grid together: give one of them per suite")
    if isinstance(suite.seeds, SeedPlan):
        raise SuiteProblem(("search",), "search needs seeds as a list, not a plan that adds seeds")
    names = {m.row: m.name for m in suite.methods} | {m.name: m.name for m in suite.methods}
    for method, space in plan.spaces.items():
        if method not in names:
            raise SuiteProblem(
                ("search", "spaces", method),
                f"'{method}' is not one of the suite's methods ({', '.join(names)}); name one",
            )
        if not isinstance(space, dict):
            raise SuiteProblem(
                ("search", "spaces", method),
                f"method '{method}': give parameter: distribution, e.g. "
                "{temperature: {log_uniform: [1, 8]}}",
            )
        defaults = known.methods[names[method]].defaults
        for parameter, raw in space.items():
            location = ("search", "spaces", method, parameter)
            if parameter not in defaults:
                raise SuiteProblem(
                    location, parameter_problem(names[method], parameter, None, defaults) or ""
                )
            try:
                distribution = parse(raw)
            except ValueError as error:
                raise SuiteProblem(location, f"method '{method}', {parameter}: {error}") from None
            why = problem(distribution, defaults[parameter])
            if why:
                raise SuiteProblem(location, f"method '{method}', {parameter}: {why}")
    for method in suite.methods:
        card = known.methods[method.name]
        for parameter, distribution in card.search_space().items():
            why = (
                f"has no parameter '{parameter}'"
                if parameter not in card.defaults
                else problem(distribution, card.defaults[parameter])
            )
            if why:
                raise SuiteProblem(
                    ("search",),
                    f"method '{method.name}' declares a search over {parameter} that cannot be "
                    f"used: {why}; fix its `search` or replace it under search.spaces",
                )


def search_space(suite: Suite, method: MethodSpec, known: Catalogue) -> dict[str, Distribution]:
    """What a search draws for `method`: its declared space, the suite's replacements
    (`search.spaces`, by row or name), less the parameters its `params` fix; with the recipe,
    the student's learning rate and weight decay as `recipe.lr`, `recipe.weight_decay`."""
    plan = suite.search
    card = known.methods[method.name]
    if plan is None or not card.trains_student:
        return {}
    replaced = {**plan.spaces.get(method.name, {}), **plan.spaces.get(method.row, {})}
    space = card.search_space() | {name: parse(raw) for name, raw in replaced.items()}
    space = {name: d for name, d in space.items() if name not in method.params}
    if plan.recipe:
        space |= {f"{RECIPE}{name}": d for name, d in RECIPE_SPACE.items()}
    return space


RECIPE = "recipe."  # a search parameter of the student recipe, not of the method


def _search_runs(suite: Suite, known: Catalogue, specs: list[RunSpec]) -> list[RunSpec]:
    """Trials 1..N of every run of `specs` whose method has something to search: the method's
    parameters and the student recipe set to the trial's draw (seeded by method row, setting
    and trial, so every seed, teacher and student of a trial share its values)."""
    plan = suite.search
    if plan is None:
        return []
    spaces = {m.row: search_space(suite, m, known) for m in suite.methods}
    runs = []
    for spec in specs:
        space = spaces.get(spec.method.row)
        for trial in range(1, plan.trials + 1) if space else ():
            values = draw(space, plan.seed, spec.method.row, spec.setting.label, trial)
            recipe = {k.removeprefix(RECIPE): v for k, v in values.items() if k.startswith(RECIPE)}
            params = {k: v for k, v in values.items() if not k.startswith(RECIPE)}
            method = spec.method.model_copy(
                update={"params": {**spec.method.params, **params}, "trial": trial}
            )
            runs.append(
                spec.model_copy(
                    update={
                        "method": method,
                        "student_recipe": spec.student_recipe.model_copy(update=recipe),
                    }
                )
            )
    return runs


def _family(domain: str, location: Location) -> str:
    try:
        return domain_info(domain).family
    except XdkdError as error:
        raise SuiteProblem(location, str(error)) from None


def _check_domains(suite: Suite) -> None:
    seen: dict[tuple, int] = {}
    for index, pair in enumerate(suite.pairs):
        for sources, targets in pair.expanded():
            shape = (tuple(sources), tuple(targets or sources))
            if shape in seen:
                first = seen[shape]
                what = f"{'+'.join(shape[0])}→{'+'.join(shape[1])}"
                raise SuiteProblem(("pairs", index), f"repeats pairs.{first} ({what}); remove it")
            seen[shape] = index
            domains = [*sources, *targets]
            for name in ("source", "target", "leave_one_out"):
                value = getattr(pair, name)
                for position, domain in enumerate(
                    [value] if isinstance(value, str) else value or []
                ):
                    location = (
                        ("pairs", index, name)
                        if isinstance(value, str)
                        else ("pairs", index, name, position)
                    )
                    _family(domain, location)
            families = {d: _family(d, ("pairs", index)) for d in domains}
            if len(set(families.values())) > 1:
                shown = ", ".join(f"{d} ({f})" for d, f in families.items())
                raise SuiteProblem(
                    ("pairs", index),
                    f"domains of different families in one pair: {shown}; their classes differ",
                )
            repeat = _first_repeat(sources) or _first_repeat(targets)
            if repeat:
                raise SuiteProblem(("pairs", index), "a domain is listed twice in this pair")
            both = sorted(set(sources) & set(targets))
            if both and (len(sources) > 1 or len(targets) > 1):
                raise SuiteProblem(
                    ("pairs", index),
                    f"'{both[0]}' is both a source and a target; a domain is one or the other",
                )
    _check_tasks(suite)
    family_of_suite = {
        _family(d, ("pairs",)) for p in suite.pairs for s, t in p.expanded() for d in s + t
    } | {_family(t.source, ("tasks",)) for t in suite.tasks}
    for index, domain in enumerate(suite.heldout or []):
        family = _family(domain, ("heldout", index))
        if family_of_suite and family not in family_of_suite:
            raise SuiteProblem(
                ("heldout", index), f"'{domain}' ({family}) is of no family this suite uses"
            )


def _check_tasks(suite: Suite) -> None:
    uses_tasks = any(p.name == "multi_task" for p in suite.protocol) or any(
        p.name == "multi_task" for m in suite.methods for p in m.protocol or []
    )
    if suite.tasks and not uses_tasks:
        raise SuiteProblem(
            ("tasks",), "tasks are for protocol multi_task; add it to protocol or remove tasks"
        )
    if uses_tasks and len(suite.tasks) < 2:
        raise SuiteProblem(
            ("tasks",),
            "multi_task needs at least two tasks, e.g. tasks: [{name: low, source: mnist, "
            "classes: [0, 1, 2, 3, 4]}, {name: high, source: mnist, classes: [5, 6, 7, 8, 9]}]",
        )
    _no_repeats(
        "tasks",
        [t.name for t in suite.tasks],
        [t.name for t in suite.tasks],
        "give each task its own name",
    )
    families = set()
    for index, task in enumerate(suite.tasks):
        families.add(_family(task.source, ("tasks", index, "source")))
        if task.target:
            families.add(_family(task.target, ("tasks", index, "target")))
        classes = domain_info(task.source).classes
        for position, name in enumerate(task.classes):
            if name not in classes:
                raise SuiteProblem(
                    ("tasks", index, "classes", position),
                    f"'{name}' is not a class of {task.source}; its classes: {', '.join(classes)}",
                )
        if _first_repeat(task.classes):
            raise SuiteProblem(("tasks", index, "classes"), "a class is listed twice")
    if len(families) > 1:
        raise SuiteProblem(
            ("tasks",), f"tasks of different families ({', '.join(sorted(families))})"
        )


# --- expansion ---------------------------------------------------------------------------


def fits_shape(protocol: ProtocolSpec, sources: list[str], targets: list[str]) -> str | None:
    """Why a pair does not have the shape a protocol needs, or None."""
    declared = PROTOCOLS[protocol.name]
    if declared.sources == "tasks":
        return "multi_task takes the suite's tasks, not pairs"
    if declared.targets == "source":
        if len(sources) != 1 or (targets and targets != sources):
            return f"{protocol.name} needs one source and no other target ({{source: mnist}})"
        return None
    if not targets:
        return "it needs a target (no target: in_domain)"
    if declared.sources == "one" and len(sources) != 1:
        return f"{protocol.name} needs one source; this pair has {len(sources)} (multi_source?)"
    if declared.sources == "several" and len(sources) < 2:
        return f"{protocol.name} needs several sources; this pair has one"
    if declared.targets == "one" and len(targets) != 1:
        return f"{protocol.name} needs one target; this pair has {len(targets)} (multi_target?)"
    if declared.targets == "several" and len(targets) < 2:
        return f"{protocol.name} needs several targets; this pair has one"
    if set(sources) & set(targets):
        return (
            "its source and target are the same domain, so there is no shift (protocol "
            "in_domain distils on one domain)"
        )
    return None


def _settings(
    suite: Suite, protocols: list[ProtocolSpec]
) -> Iterator[tuple[Setting | None, Location, str]]:
    """(setting or None, location, why not) for every pair entry and task set x protocol."""
    for protocol in protocols:
        if protocol.name == "multi_task":
            tasks = suite.tasks
            sources = list(dict.fromkeys(t.source for t in tasks))
            targets = list(dict.fromkeys(t.target_domain for t in tasks))
            yield (
                Setting(protocol=protocol, sources=sources, targets=targets, tasks=tasks),
                ("tasks",),
                "",
            )
            continue
        for index, pair in enumerate(suite.pairs):
            for sources, targets in pair.expanded():
                why = fits_shape(protocol, sources, targets)
                if why:
                    yield None, ("pairs", index), f"not run under {protocol.label}: {why}"
                    continue
                targets = targets or list(sources)
                yield (
                    Setting(protocol=protocol, sources=sources, targets=targets),
                    (
                        "pairs",
                        index,
                    ),
                    "",
                )


def settings_of_suite(suite: Suite) -> tuple[list[Setting], list[str]]:
    """The suite's settings under its protocols, and a note for each pair left out under a
    protocol; a pair that fits none of them is refused."""
    settings, notes, fitted = [], [], set()
    reasons: dict[Location, list[str]] = {}
    for setting, location, why in _settings(suite, suite.protocol):
        if setting is None:
            reasons.setdefault(location, []).append(why)
            continue
        fitted.add(location)
        if setting not in settings:
            settings.append(setting)
    for location, why in reasons.items():
        if location not in fitted:
            raise SuiteProblem(location, "; ".join(dict.fromkeys(why)))
        notes += [f"{'.'.join(map(str, location))}: {w}" for w in why]
    if not settings:
        raise SuiteProblem(("pairs",), "no pairs: give pairs: [{source: ..., target: ...}]")
    return settings, notes


def setting_grants(setting: Setting) -> Grants:
    """What a setting grants under its protocol."""
    return grants(
        setting.protocol.name,
        setting.protocol.params,
        sources=len(setting.sources),
        targets=len(setting.targets),
        tasks=len(setting.tasks),
    )


@dataclass
class Expansion:
    specs: list[RunSpec]
    notes: list[str]


def expand_runs(suite: Suite, known: Catalogue) -> Expansion:
    """setting x teacher x student x method x seed (x grid cell), where the method fits the
    setting, then the suite's controls; runs sharing a teacher are adjacent; the teacher row
    and teacher-architecture methods get the teacher's backbone as their student."""
    expansion = _expand_grid(suite, known) if suite.grid else _expand_methods(suite, known)
    controls = [
        spec.model_copy(update={"method": spec.method.model_copy(update={"stream": 1})})
        for control in suite.controls
        for spec in expansion.specs
        if spec.method.row.partition(" [")[0] == controlled_method(suite, control.method)
    ]
    trials = _search_runs(suite, known, expansion.specs)
    specs = sorted(
        [*expansion.specs, *controls, *trials],
        key=lambda s: (s.seed, [t.key for t in s.teacher_specs], s.setting.label),
    )
    return Expansion(specs, expansion.notes)


def controlled_method(suite: Suite, named: str | None) -> str:
    """The row an A/A control repeats: the one named, else the first of kd and source_only
    the suite has, else its first method."""
    rows = [m.row for m in suite.methods]
    return named or next((r for r in ("kd", "source_only") if r in rows), rows[0])


def _expand_methods(suite: Suite, known: Catalogue) -> Expansion:
    """The runs of a suite without a grid (see `expand_runs`)."""
    settings, notes = settings_of_suite(suite)
    specs: dict[str, RunSpec] = {}
    for index, method in enumerate(suite.methods):
        card = known.methods[method.name]
        own = _own_settings(suite, method, index) if method.protocol else settings
        fitting, why_not = [], []
        for setting in own:
            problem = unmet(Needs(**card.needs), setting_grants(setting))
            if problem:
                why_not.append(f"under {setting.protocol.label} on {setting.label} it {problem}")
            else:
                fitting.append(setting)
        if not fitting:
            raise SuiteProblem(
                ("methods", index),
                f"method '{method.name}' fits no setting of this suite: "
                + "; ".join(dict.fromkeys(why_not))
                + "; remove it or add a protocol that grants what it needs",
            )
        notes += [f"method '{method.row}' skipped {w}" for w in why_not]
        for setting in fitting:
            for seed in suite.first_seeds:
                for teacher in suite.teachers:
                    own_student = not card.trains_student or card.student_is_teacher_architecture
                    for student in [teacher] if own_student else suite.students:
                        spec = RunSpec(
                            suite=suite.name,
                            setting=setting,
                            teacher=teacher,
                            student=student,
                            method=method.model_copy(
                                update={"protocol": None, "plugin": card.plugin}
                            ),
                            seed=seed,
                            image_size=suite.image_size,
                            source_validation=suite.source_validation,
                            target_validation=suite.target_validation,
                            teacher_recipe=suite.teacher_recipe,
                            student_recipe=suite.student_recipe,
                        )
                        specs.setdefault(spec.key, spec)
    ordered = sorted(
        specs.values(),
        key=lambda s: (s.seed, [t.key for t in s.teacher_specs], s.setting.label),
    )
    return Expansion(ordered, list(dict.fromkeys(notes)))


def _expand_grid(suite: Suite, known: Catalogue) -> Expansion:
    """Every cell's runs, each method marked with its cell (which names its row and enters
    its key); ordered as one suite's runs, the cells of a run in the grid's order."""
    specs, notes = [], []
    for cell, cell_suite in grid_cells(suite, known):
        # the controls are the whole suite's, added once by `expand_runs` to every cell
        expansion = expand_runs(cell_suite.model_copy(update={"controls": []}), known)
        notes += [f"grid [{grid_label(cell)}]: {note}" for note in expansion.notes]
        for spec in expansion.specs:
            method = spec.method.model_copy(update={"grid": cell})
            specs.append(spec.model_copy(update={"method": method}))
    specs.sort(key=lambda s: (s.seed, [t.key for t in s.teacher_specs], s.setting.label))
    return Expansion(specs, list(dict.fromkeys(notes)))


def grid_cells(suite: Suite, known: Catalogue) -> list[tuple[dict[str, Any], Suite]]:
    """(cell, the suite with the cell's values set) for every cell of the grid's product,
    set with `--set`'s machinery; a key the suite does not have or a value its field refuses
    is a problem at that grid key."""
    base = suite.model_dump(mode="json", exclude={"grid"})
    keys = list(suite.grid)
    cells = []
    for values in itertools.product(*suite.grid.values()):
        cell = dict(zip(keys, values, strict=True))
        raw = copy.deepcopy(base)
        for key, value in cell.items():
            try:
                set_value(raw, key, value, f"{key}={value!r}")
            except XdkdError as error:
                raise SuiteProblem(("grid", key), str(error)) from None
        try:
            cell_suite = Suite.model_validate(raw, context={"catalogue": known})
            check_suite(cell_suite, known)
        except ValidationError as error:
            location, problem = first_problem(error)
            raise _blamed(cell, location, problem) from None
        except SuiteProblem as problem:
            raise _blamed(cell, problem.location, problem.message) from None
        cells.append((cell, cell_suite))
    return cells


def _blamed(cell: dict[str, Any], location: Location, problem: str) -> SuiteProblem:
    """A cell's problem, blamed on the grid key whose field it is (else on the first key)."""
    field_name = ".".join(map(str, location))
    own = next((k for k in cell if field_name == k or field_name.startswith(f"{k}.")), None)
    if own is not None:
        return SuiteProblem(("grid", own), f"value {cell[own]!r}: {problem}")
    where = f"{field_name} in cell [{grid_label(cell)}]"
    return SuiteProblem(("grid", next(iter(cell))), f"{where}: {problem}")


def _own_settings(suite: Suite, method: MethodSpec, index: int) -> list[Setting]:
    """The settings of a method that names its own protocols."""
    settings, reasons = [], []
    for setting, _, why in _settings(suite, method.protocol):
        if setting is None:
            reasons.append(why)
        elif setting not in settings:
            settings.append(setting)
    if not settings:
        raise SuiteProblem(("methods", index, "protocol"), "; ".join(dict.fromkeys(reasons)))
    return settings


def expand(suite: Suite, known: Catalogue | None = None) -> list[RunSpec]:
    from benchmark.suite.catalogue import catalogue

    return expand_runs(suite, known or catalogue()).specs
