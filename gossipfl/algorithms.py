"""The gossip algorithms, each defined once for both runtimes.

An algorithm fixes, for one round, whom a peer sends to and hears from, the weight it gives
each model it receives and its own, and the combine rule that mixes them (``gossipfl.rules``).
The vectorized simulator evaluates the weight functions over every edge at once (numpy
arrays) and a real peer over its own neighbours (scalars): the same functions, so both
runtimes mix identically.

- ``dpsgd`` (D-PSGD, synchronous rounds): every neighbour, both ways. The receiver weighs a
  neighbour Metropolis–Hastings ``1/(1 + max(d_i, d_j))`` or uniform ``1/(1 + d_i)`` and keeps
  the rest for itself, so each row sums to one (and MH is doubly stochastic).
- ``pushsum`` (push-sum / SGP, directed links): a peer splits its mass evenly over itself and
  its out-neighbours, so a message weighs ``1/(1 + out-degree of its sender)`` and the sender
  keeps whatever share it did not deliver (columns sum to one). Peers carry a numerator and a
  mass ``w``; their model is numerator / ``w``.
- ``gossip`` (pairwise gossip): one partner a round (a random matching in synchronous rounds,
  a random neighbour in async gossip learning); each keeps half.

``lazy`` halves every neighbour weight, which is the lazy matrix ``(I + W) / 2``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ALGORITHMS", "MIXINGS", "Algorithm", "Mixing", "get_algorithm"]

Mixing = Literal["metropolis", "uniform"]
MIXINGS: tuple[Mixing, ...] = ("metropolis", "uniform")


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    summary: str
    # Messages follow out-edges (push-sum); otherwise every edge carries one each way.
    directed: bool = False
    # One partner a round (pairwise gossip) instead of every neighbour.
    pairwise: bool = False
    # Weights are the sender's shares (columns sum to one): a peer's own weight is one minus
    # the shares it delivered. Otherwise the receiver keeps one minus what it received.
    sender_shares: bool = False

    def neighbour_weight(
        self,
        own_degree: np.ndarray,
        sender_degree: np.ndarray,
        mixing: Mixing = "metropolis",
        lazy: bool = False,
    ) -> np.ndarray:
        """The weight a peer of ``own_degree`` gives a message from a sender of
        ``sender_degree`` (out-degree for push-sum); arrays broadcast, scalars work too."""
        own, sender = np.broadcast_arrays(
            np.asarray(own_degree, dtype=np.float64), np.asarray(sender_degree, dtype=np.float64)
        )
        if self.pairwise:
            weight = np.full(own.shape, 0.5)
        elif self.sender_shares:
            weight = 1.0 / (1.0 + sender)
        elif mixing == "uniform":
            weight = 1.0 / (1.0 + own)
        else:
            weight = 1.0 / (1.0 + np.maximum(own, sender))
        return weight * 0.5 if lazy else weight

    def check_graph(self, graph: nx.Graph, mixing: Mixing = "metropolis") -> None:
        """ValueError (one line) if this algorithm cannot run on ``graph`` with ``mixing``."""
        import networkx as nx

        if graph.number_of_nodes() == 0:
            raise ValueError("the topology has no nodes")
        if self.directed:
            directed = graph if graph.is_directed() else graph.to_directed()
            if not nx.is_strongly_connected(directed):
                raise ValueError(
                    f"{self.name} needs a strongly connected graph: mass that cannot flow back "
                    "never averages (some nodes cannot reach others along directed edges)"
                )
            return
        if graph.is_directed():
            raise ValueError(
                f"{self.name} needs an undirected topology; use --algorithm pushsum on directed graphs"
            )
        if mixing == "uniform" and not self.pairwise and len({d for _, d in graph.degree}) > 1:
            raise ValueError(
                "uniform mixing needs a regular graph (on an irregular one it converges to a "
                "degree-weighted average, not the mean): use metropolis"
            )


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("dpsgd", "synchronous D-PSGD: every neighbour every round"),
        Algorithm("pushsum", "push-sum over directed links", directed=True, sender_shares=True),
        Algorithm("gossip", "pairwise gossip: one partner a round, each keeps half", pairwise=True),
    )
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; use one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
