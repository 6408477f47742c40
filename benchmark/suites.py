"""Suites from YAML, and what they expand into.

Loading gives one line per mistake: `file:line: field: problem` for what the file says, and
`--set key=value: field: problem` for what an override set. Expansion turns each entry of
`pairs` (or the suite's `tasks`) under each protocol that fits it into a `Setting`, then
every setting x teacher x student x method x seed into a `RunSpec`, keeping a method only
where the setting grants what it needs (`benchmark.protocols.unmet`); what is left out is
said in a note, and a pair, protocol or method that fits nothing stops the suite here,
before any teacher trains. Torch-free: the method declarations come from the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from benchmark.catalogue import Catalogue, MethodCard
from benchmark.config import (
    ProtocolSpec,
    RunSpec,
    Setting,
    Suite,
    TaskSpec,
)
from benchmark.errors import XdkdError
from benchmark.protocols import PROTOCOLS, grants, unmet

Location = tuple[Any, ...]


class SuiteProblem(XdkdError):
    """A mistake at a location of the suite (`("pairs", 2, "source")`)."""

    def __init__(self, location: Location, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


@dataclass(frozen=True)
class Override:
    path: tuple[str | int, ...]
    text: str


@dataclass
class Source:
    """Where a suite came from: its file, its YAML node tree (for line numbers) and the
    overrides applied on top, so each problem is blamed on what caused it."""

    path: Path
    root: yaml.Node | None
    overrides: list[Override] = field(default_factory=list)

    def where(self, location: Location) -> str:
        for override in self.overrides:
            if tuple(location[: len(override.path)]) == override.path:
                return f"--set {override.text}"
        line = _line_of(self.root, location)
        return f"{self.path}:{line}" if line else str(self.path)

    def message(self, location: Location, problem: str) -> str:
        field_name = ".".join(str(p) for p in location) or "(top level)"
        return f"{self.where(location)}: {field_name}: {problem}"


def _line_of(root: yaml.Node | None, location: Location) -> int | None:
    """The 1-based line of the YAML node at a location, as deep as it exists."""
    node, line = root, None
    for part in location:
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


def _pydantic_message(source: Source, error: ValidationError) -> str:
    first = error.errors()[0]
    location = tuple(
        p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function"))
    )
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; remove it or check its spelling"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return source.message(location, message + more)


def validation_message(path: Path, root: yaml.Node | None, error: ValidationError) -> str:
    """`file:line: field: problem` for a pydantic error in any YAML file (dataset families)."""
    return _pydantic_message(Source(path, root), error)


# --- reading -----------------------------------------------------------------------------


def read_yaml(path: Path, what: str) -> tuple[str, Any, yaml.Node | None]:
    """(text, parsed value, node tree) of a YAML file, or one line naming what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise XdkdError(f"{what} '{path}' not found") from None
    except IsADirectoryError:
        raise XdkdError(f"{what} '{path}' is a directory; give a .yaml file") from None
    except OSError as error:
        raise XdkdError(f"cannot read {what} '{path}': {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise XdkdError(
            f"{what} '{path}' is not UTF-8 text (byte {data[error.start]:#04x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from None
    try:
        return text, yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise XdkdError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> list[Override]:
    """`--set student_recipe.epochs=2 --set seeds=[0,1] --set methods.1.name=kd`: dotted keys
    (a number picks a list item), YAML values."""
    applied = []
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise XdkdError(f"--set '{text}' is not key=value, e.g. --set seeds=[0,1]")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise XdkdError(
                f"--set '{text}': the value is not valid YAML ({problem}); quote it for "
                "the shell, e.g. --set 'seeds=[0, 1]'"
            ) from None
        path: list[str | int] = []
        node: Any = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            if isinstance(node, list):
                node = _list_item(node, part, text)
                path.append(int(part))
                continue
            if not isinstance(node, dict):
                raise XdkdError(f"--set '{text}': '{'.'.join(map(str, path))}' is not a mapping")
            child = node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise XdkdError(f"--set '{text}': '{part}' is not a mapping in the suite")
            node = child
            path.append(part)
        if isinstance(node, list):
            _list_item(node, leaf, text)
            node[int(leaf)] = parsed
            path.append(int(leaf))
        else:
            node[leaf] = parsed
            path.append(leaf)
        applied.append(Override(tuple(path), text))
    return applied


def _list_item(items: list, part: str, text: str) -> Any:
    if not part.isdigit() or int(part) >= len(items):
        raise XdkdError(
            f"--set '{text}': '{part}' is not an index of a list of {len(items)} (0-based)"
        )
    return items[int(part)]


def load_suite(
    path: str | Path, overrides: list[str] | None = None, catalogue: Catalogue | None = None
) -> Suite:
    """A validated suite; every name checked against `catalogue` (default: the cached one)."""
    from benchmark.catalogue import catalogue as cached

    path = Path(path)
    _, raw, root = read_yaml(path, "suite file")
    if not isinstance(raw, dict):
        raise XdkdError(f"{path}: a suite is a YAML mapping with name, pairs, teachers, ...")
    source = Source(path, root, apply_overrides(raw, overrides or []))
    raw.setdefault("name", path.stem)
    known = catalogue or cached()
    try:
        suite = Suite.model_validate(raw, context={"catalogue": known})
    except ValidationError as error:
        raise XdkdError(_pydantic_message(source, error)) from None
    try:
        check_suite(suite, known)
    except SuiteProblem as problem:
        raise XdkdError(source.message(problem.location, problem.message)) from None
    return suite


# --- checks across fields ------------------------------------------------------------------


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
    import json

    dump = lambda m: json.dumps(m.model_dump(mode="json"), sort_keys=True)  # noqa: E731
    _no_repeats("seeds", suite.seeds, list(map(str, suite.seeds)), "remove it")
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
    _check_domains(suite)
    settings_of_suite(suite)  # every pair and task set fits a protocol
    expand_runs(suite, known)  # every method fits a setting


def _family(domain: str, location: Location) -> str:
    from benchmark.data.domains import domain_info

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
    from benchmark.data.domains import domain_info

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
            return "in_domain needs one source and no other target ({source: mnist})"
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
    suite: Suite, protocols: list[ProtocolSpec], where: Location
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
    for setting, location, why in _settings(suite, suite.protocol, ()):
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


def task_grants(setting: Setting):
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
    """setting x teacher x student x method x seed, where the method fits the setting; runs
    sharing a teacher are adjacent; the teacher row and teacher-architecture methods get the
    teacher's backbone as their student."""
    settings, notes = settings_of_suite(suite)
    specs: dict[str, RunSpec] = {}
    for index, method in enumerate(suite.methods):
        card = known.methods[method.name]
        own = _own_settings(suite, method, index) if method.protocol else settings
        fitting, why_not = [], []
        for setting in own:
            problem = unmet(_needs(card), task_grants(setting))
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
            for seed in suite.seeds:
                for teacher in suite.teachers:
                    own_student = not card.trains_student or card.student_is_teacher_architecture
                    for student in [teacher] if own_student else suite.students:
                        spec = RunSpec(
                            suite=suite.name,
                            setting=setting,
                            teacher=teacher,
                            student=student,
                            method=method.model_copy(update={"protocol": None}),
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


def _own_settings(suite: Suite, method, index: int) -> list[Setting]:
    """The settings of a method that names its own protocols."""
    settings, reasons = [], []
    for setting, _, why in _settings(suite, method.protocol, ()):
        if setting is None:
            reasons.append(why)
        elif setting not in settings:
            settings.append(setting)
    if not settings:
        raise SuiteProblem(("methods", index, "protocol"), "; ".join(dict.fromkeys(reasons)))
    return settings


def _needs(card: MethodCard):
    from benchmark.protocols import Needs

    return Needs(**card.needs)


def expand(suite: Suite, known: Catalogue | None = None) -> list[RunSpec]:
    from benchmark.catalogue import catalogue

    return expand_runs(suite, known or catalogue()).specs


__all__ = ["TaskSpec", "expand", "expand_runs", "load_suite", "settings_of_suite"]
