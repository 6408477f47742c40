"""The names a suite may use (methods with what they need, backbones, corruptions), readable
without importing torch.

The registries themselves live in modules that import torch (5-6 s on a small CPU). Listing
commands, suite validation in reporting commands and `--help` only need the names and their
declarations, so `catalogue()` keeps a JSON copy of them in the cache directory, keyed by a
fingerprint of the code that declares them (the package's files, torch's and timm's
versions): any edit to a method or corruption file makes a new catalogue. `live_catalogue()`
builds it from the registries, for processes that import torch anyway.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.files import atomic_write

PACKAGE = Path(__file__).resolve().parent
FORMAT = 3


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


def live_corruptions() -> Catalogue:
    """The corruptions alone, from their registry (imports torch, not the methods)."""
    from benchmark.corruptions import CORRUPTIONS
    from benchmark.corruptions.registry import GROUPS

    corruptions = {
        name: CorruptionCard(name, entry.group, len(entry.severities), entry.counted)
        for name, entry in CORRUPTIONS.items()
    }
    return Catalogue(corruptions=corruptions, groups=list(GROUPS))


def live_catalogue() -> Catalogue:
    """Built from the registries (imports torch, timm, every method and corruption); methods
    registered at run time (test doubles, plug-ins) are in it."""
    from benchmark.methods import METHODS
    from benchmark.plugins import method_origin

    methods = {
        name: MethodCard(
            name=name,
            family=cls.family,
            paper=cls.paper,
            defaults=dict(cls.defaults),
            needs=cls.needs.as_dict(),
            trains_student=cls.trains_student,
            student_is_teacher_architecture=cls.student_is_teacher_architecture,
            origin=origin.label if (origin := method_origin(name)) else cls.__module__,
            plugin=origin.version if origin else None,
            adapts_at_test=cls.adapts_at_test,
        )
        for name, cls in METHODS.items()
    }
    corruptions = _live_parts()
    return Catalogue(methods, corruptions.backbones, corruptions.corruptions, corruptions.groups)


@functools.cache
def _live_parts() -> Catalogue:
    """Backbones and corruptions, which nothing registers after import."""
    from benchmark.models import backbone_names

    corruptions = live_corruptions()
    return Catalogue(
        backbones=backbone_names(), corruptions=corruptions.corruptions, groups=corruptions.groups
    )


def fingerprint() -> str:
    """Changes whenever any file of the package, a plug-in or the torch/timm version changes."""
    from benchmark.plugins import fingerprint as plugins_fingerprint

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
    from benchmark.data.domains import cache_dir

    return cache_dir() / "catalogue" / f"catalogue-{fingerprint()}.json"


_loaded: Catalogue | None = None


def catalogue() -> Catalogue:
    """The cached catalogue for this code, built (once, with torch) when there is none; in a
    process that has loaded the registries, the registries themselves."""
    global _loaded
    if "benchmark.methods" in sys.modules:
        return live_catalogue()
    if _loaded is not None:
        return _loaded
    path = catalogue_path()
    try:
        _loaded = Catalogue.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):  # absent, damaged or of another format
        _loaded = live_catalogue()
        with contextlib.suppress(OSError):  # a read-only cache: it still serves this process
            atomic_write(path, json.dumps(_loaded.to_json(), indent=1).encode())
    return _loaded


def resolve_corruptions(entries: list[str], known: Catalogue) -> list[str]:
    """Group names (`benchmark`: the 15 that count; `noise`, ..., `shape`) and corruption
    names -> corruption names, in registry order, no repeats; LookupError for an unknown one."""
    from benchmark.registry import unknown_name_message

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
