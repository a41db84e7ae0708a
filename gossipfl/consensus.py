"""Consensus distance: how far peers' models are from their average."""

from __future__ import annotations

import torch

__all__ = ["consensus_distance"]


def consensus_distance(rows: torch.Tensor, chunk: int = 1024) -> float:
    """``(1/N) sum_i ||x_i - mean||^2`` over rows, computed in chunks to bound memory."""
    mean = rows.mean(dim=0, dtype=torch.float64)
    total = 0.0
    for start in range(0, rows.shape[0], chunk):
        diff = rows[start : start + chunk].double() - mean
        total += float(diff.pow(2).sum())
    return total / rows.shape[0]
