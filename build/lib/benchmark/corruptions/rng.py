"""Counter-based random fields: every draw is a pure function of (image seed, stream, index).

ImageNet-C (Hendrycks & Dietterich, ICLR 2019) drew its corruptions from numpy's global state,
so a regenerated set differs from the published one and from itself. Here each value is a
splitmix64 hash of the image's seed, a named stream and the element's index, computed with
integer tensor ops: no global state, the same bits on CPU and CUDA, one image's draws never
depend on the batch around it, and a whole batch is drawn in one vectorised call.
"""

from __future__ import annotations

import torch

from benchmark.seeding import name_seed

_U64 = 1 << 64
GOLDEN = 0x9E3779B97F4A7C15 - _U64  # splitmix64 constants as signed int64 (torch wraps)
_MIX1 = 0xBF58476D1CE4E5B9 - _U64
_MIX2 = 0x94D049BB133111EB - _U64
_BITS = 23  # uniforms (k + 0.5) / 2**23 are exact in float32 and never 0 or 1


def _shift_right(z: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift on int64 (torch's >> is arithmetic)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser (Steele et al. 2014), elementwise on int64."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def stream_keys(seeds: torch.Tensor, stream: str) -> torch.Tensor:
    """One 64-bit key per image for a named stream, so streams never share values."""
    return mix64(seeds.long() * GOLDEN + name_seed(stream))


def uniform_at(keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1) for elements `index` of the streams `keys` (broadcast together):
    splitmix64's stream, its counter being the element index."""
    bits = _shift_right(mix64(keys + (index + 1) * GOLDEN), 64 - _BITS)
    return (bits.float() + 0.5) / (1 << _BITS)


def uniform(seeds: torch.Tensor, stream: str, *shape: int) -> torch.Tensor:
    """A (N, *shape) float32 field of uniforms in (0, 1), one independent field per image."""
    count = 1
    for size in shape:
        count *= size
    keys = stream_keys(seeds, stream)
    index = torch.arange(count, device=seeds.device)
    return uniform_at(keys[:, None], index[None, :]).reshape(len(seeds), *shape)


def normal(seeds: torch.Tensor, stream: str, *shape: int) -> torch.Tensor:
    """Standard normals by inverse CDF, one uniform each (tails end near ±5.4σ)."""
    return torch.special.ndtri(uniform(seeds, stream, *shape))


def _poisson_small(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inversion for rates below 10: count the CDF steps below u (40 covers 1 - 1e-14)."""
    term = torch.exp(-rate)
    cdf = term.clone()
    count = torch.zeros_like(rate)
    for k in range(1, 41):
        above = u > cdf
        if not above.any():
            break
        count += above.to(rate.dtype)
        term = term * rate / k
        cdf = cdf + term
    return count


def _poisson_ptrs(rate: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple:
    """One round of Hörmann's (1993) transformed rejection (numpy's PTRS) for rates >= 10."""
    slam, loglam = rate.sqrt(), rate.log()
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    shifted = u - 0.5
    us = 0.5 - shifted.abs()
    k = torch.floor((2 * a / us + b) * shifted + rate + 0.43)
    quick = (us >= 0.07) & (v <= vr)
    rejected = (k < 0) | ((us < 0.013) & (v > us))
    bound = -rate + k * loglam - torch.lgamma(k.clamp(min=0) + 1)
    slow = torch.log(v) + torch.log(invalpha) - torch.log(a / (us * us) + b) <= bound
    return k, quick | (~rejected & slow)


def poisson(rates: torch.Tensor, seeds: torch.Tensor, stream: str) -> torch.Tensor:
    """Exact Poisson counts for a (N, ...) tensor of rates, vectorised over all elements.

    Rates below 10 are inverted from one uniform; larger ones use PTRS, whose rejected
    proposals are redrawn from round-numbered streams, so an element's count depends only
    on its own rate, seed and index, never on which other elements were rejected.
    """
    n = len(seeds)
    flat = rates.reshape(n, -1).double()
    out = torch.zeros_like(flat)
    small = ((flat > 0) & (flat < 10)).nonzero(as_tuple=True)
    keys = stream_keys(seeds, stream)[small[0]]
    out[small] = _poisson_small(flat[small], uniform_at(keys, small[1]).double())
    pending = (flat >= 10).nonzero(as_tuple=True)
    for round_ in range(64):
        if len(pending[0]) == 0:
            break
        round_keys = stream_keys(seeds, f"{stream}/ptrs{round_}")[pending[0]]
        cols = pending[1] * 2
        u = uniform_at(round_keys, cols).double()
        v = uniform_at(round_keys, cols + 1).double()
        k, accepted = _poisson_ptrs(flat[pending], u, v)
        out[pending[0][accepted], pending[1][accepted]] = k[accepted]
        pending = (pending[0][~accepted], pending[1][~accepted])
    return out.reshape(rates.shape).to(rates.dtype)
