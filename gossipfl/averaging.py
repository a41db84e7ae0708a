"""Averaging as pure tensor functions: one implementation for the peer, the vectorized
engine and the FedAvg baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["average_states", "weighted_sum"]


def weighted_sum(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[k] * stacked[k]`` over the first dimension, in the stack's dtype."""
    if stacked.shape[0] != weights.shape[0]:
        raise ValueError(f"{stacked.shape[0]} tensors but {weights.shape[0]} weights")
    w = weights.to(dtype=stacked.dtype, device=stacked.device)
    out: torch.Tensor = torch.tensordot(w, stacked, dims=1)
    return out


def average_states(
    states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """Weighted combination of state dicts with equal keys (weights are used as given:
    pass weights summing to 1 for an average).

    Accumulates in place rather than stacking: for a 10M-parameter model this is one pass
    per state instead of a copy of all of them first.
    """
    if not states:
        raise ValueError("nothing to average")
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    out = {}
    for name, first in states[0].items():
        total = first.mul(weights[0])
        for state, weight in zip(states[1:], weights[1:], strict=True):
            total.add_(state[name], alpha=weight)
        out[name] = total
    return out
