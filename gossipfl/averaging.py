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
    pass weights summing to 1 for an average)."""
    if not states:
        raise ValueError("nothing to average")
    w = torch.tensor(weights, dtype=torch.float64)
    return {name: weighted_sum(torch.stack([s[name] for s in states]), w) for name in states[0]}
