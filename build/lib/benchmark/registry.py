"""One small generic registry: name -> factory, with metadata for listing commands.

An unknown name raises an error that lists the valid names and the closest match, so a typo
in a suite file is fixed from the message alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from benchmark.errors import XdkdError

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where registered names came from: `label` for listings, `version` for run keys."""

    label: str
    version: str


_loading: Origin | None = None  # the plug-in being imported, if any


@contextmanager
def attributed_to(origin: Origin) -> Iterator[None]:
    """Every entry registered while a plug-in loads is attributed to it (`origin_of`)."""
    global _loading
    previous, _loading = _loading, origin
    try:
        yield
    finally:
        _loading = previous


class UnknownNameError(XdkdError):
    """A name that is not in a registry."""


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    """`unknown method 'kdd'; did you mean 'kd'? valid: dkd, kd, source_only`."""
    closest = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{closest[0]}'?" if closest else ""
    shown = ", ".join(sorted(valid)[:40]) + (", ..." if len(valid) > 40 else "")
    return f"unknown {kind} '{name}'{hint} valid: {shown}"


class Registry(Generic[T]):
    """Maps names to factories; filled by decorating the factories at import time."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origins: dict[str, Origin] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            # the package's own entries may register while a plug-in that imports them loads
            if _loading is not None and not getattr(entry, "__module__", "").startswith(
                "benchmark."
            ):
                self._origins[name] = _loading
            return entry

        return decorate

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(unknown_name_message(self.kind, name, list(self._entries)))
        return self._entries[name]

    def origin_of(self, name: str) -> Origin | None:
        """The plug-in that registered `name`; None for the package's own entries."""
        return self._origins.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self._entries[name]) for name in self.names()]
