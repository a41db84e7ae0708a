"""The combine-rule interface every rule implements (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["CombineRule"]


class CombineRule(Protocol):
    name: str
    # True when the rule is exactly ``self_weight * own + sum_k weights_k * received_k``: the
    # simulator may then mix all peers with one sparse product.
    linear: bool

    def combine(self, own: Tensor, received: Tensor, weights: Tensor, self_weight: Tensor) -> Tensor:
        """Each peer's new model, (N, P), from its own (N, P), the K models it received
        (N, K, P), their weights (N, K; zero for padding) and its own weight (N,)."""
        ...
