"""The corruptions' entries in the catalogue of names (`benchmark.suite.catalogue`)."""

from __future__ import annotations

from benchmark.corruptions.registry import CORRUPTIONS, GROUPS
from benchmark.suite.catalogue import Catalogue, CorruptionCard


def live_corruptions() -> Catalogue:
    """The corruptions alone, from their registry (imports torch, not the methods)."""
    corruptions = {
        name: CorruptionCard(name, entry.group, len(entry.severities), entry.counted)
        for name, entry in CORRUPTIONS.items()
    }
    return Catalogue(corruptions=corruptions, groups=list(GROUPS))
