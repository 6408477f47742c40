"""YAML files read for people: a problem is reported as `file:line: field: problem`, or
`--set key=value: field: problem` when an override caused it; dotted-key overrides. Used by
suites and by dataset family files alike."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from benchmark.errors import XdkdError

Location = tuple[Any, ...]  # a path into a YAML document: ("pairs", 2, "source")


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


def first_problem(error: ValidationError) -> tuple[Location, str]:
    """The location and the readable text of a pydantic error's first problem."""
    first = error.errors()[0]
    location = tuple(
        p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function"))
    )
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; remove it or check its spelling"
    return location, message


def pydantic_message(source: Source, error: ValidationError) -> str:
    location, message = first_problem(error)
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return source.message(location, message + more)


def validation_message(path: Path, root: yaml.Node | None, error: ValidationError) -> str:
    """`file:line: field: problem` for a pydantic error in any YAML file (dataset families)."""
    return pydantic_message(Source(path, root), error)


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
    (a number picks a list item), YAML values; what an override changes is its own, even
    where the file shares it with another key through a YAML alias."""
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
        applied.append(Override(set_value(raw, key.strip(), parsed, f"--set '{text}'"), text))
    return applied


def set_value(raw: dict[str, Any], key: str, value: Any, what: str) -> tuple[str | int, ...]:
    """Set a dotted key of a suite's raw mapping (a number picks a list item), copying each
    node on the way down; the path it set. `what` names the setter in errors (`--set ...`,
    a grid key)."""
    path: list[str | int] = []
    node: Any = raw
    *parents, leaf = key.split(".")
    for part in parents:
        if isinstance(node, list):
            child = _list_item(node, part, what)
            index: str | int = int(part)
        elif isinstance(node, dict):
            child, index = node.setdefault(part, {}), part
        else:
            raise XdkdError(f"{what}: '{'.'.join(map(str, path))}' is not a mapping")
        if not isinstance(child, dict | list):
            raise XdkdError(f"{what}: '{part}' is not a mapping in the suite")
        # copied on the way down: a YAML alias (`student_recipe: *recipe`) shares its
        # node with the anchor, and an override of one must not change the other
        node[index] = node = copy.copy(child)
        path.append(index)
    if isinstance(node, list):
        _list_item(node, leaf, what)
        node[int(leaf)] = value
        path.append(int(leaf))
    else:
        node[leaf] = value
        path.append(leaf)
    return tuple(path)


def _list_item(items: list, part: str, what: str) -> Any:
    if not part.isdigit() or int(part) >= len(items):
        raise XdkdError(f"{what}: '{part}' is not an index of a list of {len(items)} (0-based)")
    return items[int(part)]
