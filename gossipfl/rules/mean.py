"""The weighted mean: D-PSGD's Metropolis–Hastings or uniform average, pairwise gossip's
half-and-half, push-sum's sum of shares, and FedAvg's sample-weighted average."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["WeightedMean"]


class WeightedMean:
    name = "mean"
    linear = True

    def combine(self, own: Tensor, received: Tensor, weights: Tensor, self_weight: Tensor) -> Tensor:
        w = weights.to(own.dtype)
        # (N, 1, K) @ (N, K, P): one batched product, no (N, K, P) temporary.
        mixed = (w.unsqueeze(1) @ received.to(own.dtype)).squeeze(1)
        return mixed.addcmul_(own, self_weight.to(own.dtype).unsqueeze(1))
