"""The names a suite may use (methods with what they need, backbones, corruptions), read as
data: the schema layer never imports a registry.

The registries live in modules that import torch (5-6 s on a small CPU). Listing commands,
suite validation in reporting commands and `--help` only need the names and their
declarations, so the registries write them (`benchmark.methods.catalogue`) as a JSON file in
the cache directory, keyed by a fingerprint of the code that declares them (the package's
files, the plug-ins, torch's and timm's versions): any edit to a method or corruption file
makes a new catalogue. A process that has imported the methods is served by them directly
(`serve_live`), so names registered at run time (plug-ins, test doubles) are in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.errors import XdkdError
from benchmark.files import atomic_write, cache_dir
from benchmark.plugins import fingerprint as plugins_fingerprint
from benchmark.registry import unknown_name_message
from benchmark.suite.search import Distribution, parse

PACKAGE = Path(__file__).resolve().parents[1]
FORMAT = 4


@dataclass(frozen=True)
class MethodCard:
    """A method's declarations: what `xdkd methods` lists and what suites are checked against."""

    name: str
    family: str
    paper: str
    defaults: dict[str, Any]
    needs: dict[str, Any]
    trains_student: bool
    student_is_teacher_architecture: bool
    origin: str  # the package's module, or the plug-in it came from
    plugin: str | None = None  # the plug-in's version, hashed into its runs' keys
    adapts_at_test: bool = False  # test-time adaptation, applied at evaluation
    # parameter -> distribution in data form (`benchmark.suite.search`), what `search:` draws
    search: dict[str, dict[str, Any]] = field(default_factory=dict)

    def search_space(self) -> dict[str, Distribution]:
        return {name: parse(raw) for name, raw in self.search.items()}

    @property
    def reference(self) -> bool:
        """The teacher row and the oracle are references: shown, never ranked."""
        return not self.trains_student or bool(self.needs.get("oracle"))


@dataclass(frozen=True)
class CorruptionCard:
    name: str
    group: str
    severities: int
    counted: bool


@dataclass
class Catalogue:
    methods: dict[str, MethodCard] = field(default_factory=dict)
    backbones: list[str] = field(default_factory=list)
    corruptions: dict[str, CorruptionCard] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "methods": {n: asdict(c) for n, c in self.methods.items()},
            "backbones": self.backbones,
            "corruptions": {n: asdict(c) for n, c in self.corruptions.items()},
            "groups": self.groups,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalogue:
        if data.get("format") != FORMAT:
            raise ValueError("catalogue of another format")
        return cls(
            methods={n: MethodCard(**c) for n, c in data["methods"].items()},
            backbones=list(data["backbones"]),
            corruptions={n: CorruptionCard(**c) for n, c in data["corruptions"].items()},
            groups=list(data["groups"]),
        )

    def corruption_names(self, group: str | None = None) -> list[str]:
        """In group order, alphabetical within a group (the registry's order)."""
        chosen = [c for c in self.corruptions.values() if group is None or c.group == group]
        ordered = sorted(chosen, key=lambda c: (self.groups.index(c.group), c.name))
        return [c.name for c in ordered]


def fingerprint() -> str:
    """Changes whenever any file of the package, a plug-in or the torch/timm version changes."""
    digest = hashlib.sha256(f"{FORMAT}:{plugins_fingerprint()}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(PACKAGE)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for package in ("torch", "timm"):
        try:
            digest.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=absent".encode())
    return digest.hexdigest()[:16]


def catalogue_path() -> Path:
    return cache_dir() / "catalogue" / f"catalogue-{fingerprint()}.json"


_loaded: Catalogue | None = None
_live: Callable[[], Catalogue] | None = None
BUILDER = "benchmark.methods"  # `python -m` it: prints the registries' catalogue as JSON


def serve_live(build: Callable[[], Catalogue]) -> None:
    """Called by the method registry when it is imported: from then on this process reads
    the registries themselves."""
    global _live
    _live = build


def catalogue() -> Catalogue:
    """The registries' own catalogue in a process that has imported them; else the cached
    file for this code, written by the registries in a child process when there is none."""
    global _loaded
    if _live is not None:
        return _live()
    if _loaded is not None:
        return _loaded
    path = catalogue_path()
    try:
        _loaded = Catalogue.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):  # absent, damaged or of another format
        _loaded = Catalogue.from_json(_built_by_the_registries())
        with contextlib.suppress(OSError):  # a read-only cache: it still serves this process
            atomic_write(path, json.dumps(_loaded.to_json(), indent=1).encode())
    return _loaded


def _built_by_the_registries() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", BUILDER], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        own = f"{XdkdError.__module__}.{XdkdError.__name__}: "  # a plug-in's, already one line
        raise XdkdError(
            last.removeprefix(own)
            if last.startswith(own)
            else f"the method registry failed to load: {last}"
        )
    return json.loads(done.stdout)


def resolve_corruptions(entries: list[str], known: Catalogue) -> list[str]:
    """Group names (`benchmark`: the 15 that count; `noise`, ..., `shape`) and corruption
    names -> corruption names, in registry order, no repeats; LookupError for an unknown one."""
    names: list[str] = []
    for entry in entries:
        if entry == "benchmark":
            names += [n for n in known.corruption_names() if known.corruptions[n].counted]
        elif entry in known.groups:
            names += known.corruption_names(entry)
        elif entry in known.corruptions:
            names.append(entry)
        else:
            valid = ["benchmark", *known.groups, *known.corruptions]
            raise LookupError(unknown_name_message("corruption or group", entry, valid))
    return list(dict.fromkeys(names))
