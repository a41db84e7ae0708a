"""Combine rules: how a peer mixes its own model with the models its neighbours sent.

A rule works on batches of peers: ``combine(own, received, weights, self_weight)`` with
``own`` of shape (N, P), ``received`` (N, K, P) (K messages per peer, padded), ``weights``
(N, K) (zero for padding) and ``self_weight`` (N,). The vectorized simulator calls it for all
peers at once; a real peer calls it with N = 1 and its K received messages, so both runtimes
run the same code. A linear rule (``linear = True``) is ``self_weight * own + sum_k weights_k
* received_k``, which the simulator may evaluate as one sparse product ``W @ X`` instead.

Adding a rule: one module in this package and one line in ``RULES``. Rule modules import
torch only for type checking, so ``gossipfl.rules`` (and config validation, which reads
``RULES``) stays light.
"""

from __future__ import annotations

from gossipfl.rules.base import CombineRule
from gossipfl.rules.mean import WeightedMean

__all__ = ["RULES", "CombineRule", "WeightedMean", "make_rule"]

RULES: dict[str, type[CombineRule]] = {
    "mean": WeightedMean,
}


def make_rule(name: str) -> CombineRule:
    """The registered rule called ``name``; ValueError naming the choices otherwise."""
    if name not in RULES:
        raise ValueError(f"unknown combine rule {name!r}; use one of {', '.join(RULES)}")
    return RULES[name]()
