"""Per-name seeds derived from a run's seed, so no draw depends on another's position."""

from __future__ import annotations

import zlib

import torch


def derive_seed(seed: int, *names: str) -> int:
    return zlib.crc32("/".join([str(seed), *names]).encode())


def generator(seed: int, device: torch.device, *names: str) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *names))
    return gen
