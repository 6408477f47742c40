"""Per-name seeds derived from a run's seed, so no draw depends on another's position."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def name_seed(name: str) -> int:
    """A stable seed from a name alone (DomainBed's habit): adding a name never moves another."""
    return zlib.crc32(name.encode())


def derive_seed(seed: int, *names: str) -> int:
    return name_seed("/".join([str(seed), *names]))


def generator(seed: int, device: torch.device, *names: str) -> torch.Generator:
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *names))
    return gen
