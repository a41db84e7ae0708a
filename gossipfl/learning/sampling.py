"""Counter-based random numbers: the draw for (seed, stream, peer, position) is a pure
function of those four integers.

A peer running alone computes exactly its own row of what the vectorized simulator draws
for all peers at once, so the real-network and vectorized engines see identical
minibatches for the same seed, with no generator state to carry, checkpoint or split.
"""

from __future__ import annotations

import torch

__all__ = ["stream_id", "uniform"]

_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit constant as the int64 torch stores (two's complement)."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; masking the sign-extended bits makes it logical.
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _splitmix64(x: torch.Tensor) -> torch.Tensor:
    z = x + _GOLDEN
    z = (z ^ _shift(z, 30)) * _MIX1
    z = (z ^ _shift(z, 27)) * _MIX2
    return z ^ _shift(z, 31)


def stream_id(round_: int, step: int) -> int:
    """The stream of local step (or epoch) ``step`` of round ``round_``."""
    return round_ * 65_536 + step


def uniform(seed: int, stream: int, peers: torch.Tensor, count: int) -> torch.Tensor:
    """(len(peers), count) floats in [0, 1): row i depends only on (seed, stream, peers[i])."""
    device = peers.device
    key = _splitmix64(torch.tensor([_signed(seed * 0x100000001B3 + stream)], device=device))
    rows = _splitmix64(key ^ (peers.to(torch.int64) * _MIX1))
    positions = torch.arange(count, device=device, dtype=torch.int64)
    bits = _splitmix64(rows[:, None] + positions[None, :] * _GOLDEN)
    return _shift(bits, 40).to(torch.float32) / float(1 << 24)  # top 24 bits: exact in float32
