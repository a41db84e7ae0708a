"""Consensus distance: how far peers' models are from their average."""

from __future__ import annotations

import torch

__all__ = ["consensus_distance"]


def consensus_distance(rows: torch.Tensor, chunk: int = 1024) -> float:
    """``(1/N) sum_i ||x_i - mean||^2`` over rows, computed in chunks to bound memory."""
    # Both passes go a block of rows at a time in float64: a whole-stack cast would double
    # the memory of 10,000 peers' parameters just to take a mean.
    mean = torch.zeros(rows.shape[1], dtype=torch.float64, device=rows.device)
    for start in range(0, rows.shape[0], chunk):
        mean += rows[start : start + chunk].double().sum(dim=0)
    mean /= rows.shape[0]
    total = 0.0
    for start in range(0, rows.shape[0], chunk):
        diff = rows[start : start + chunk].double() - mean
        total += float(diff.pow(2).sum())
    return total / rows.shape[0]
