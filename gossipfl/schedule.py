"""Who takes part in a round and with whom: dropouts and random matchings.

Both are counter-based draws (``gossipfl.learning.sampling``): a pure function of (seed, round, peer
or edge), so the vectorized simulator, which draws for every peer at once, and real peers in
the network engine, which each ask about themselves and their neighbours, agree exactly.

A deployed peer uses ``Everyone``: every peer takes part in every round. ``Simulated`` is the
simulator's schedule for real peers: the same dropouts and matchings the vectorized engine
draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from gossipfl.learning.sampling import stream_id, uniform

__all__ = ["Everyone", "Schedule", "Simulated", "dropped", "matching"]

# Local steps use streams (round, 0..); schedules take the top of each round's range.
_DROPOUT_STEP = 65_535
_MATCHING_STEP = 65_534


def dropped(seed: int, round_: int, peers: torch.Tensor, prob: float) -> torch.Tensor:
    """Which of ``peers`` (global indices) miss round ``round_``, each with probability ``prob``."""
    if prob <= 0:
        return torch.zeros(len(peers), dtype=torch.bool, device=peers.device)
    return uniform(seed, stream_id(round_, _DROPOUT_STEP), peers, 1)[:, 0] < prob


def matching(
    u: torch.Tensor, v: torch.Tensor, n: int, seed: int, round_: int, active: torch.Tensor | None = None
) -> torch.Tensor:
    """A random set of disjoint edges among ``(u[k], v[k])`` for round ``round_``: each node's
    partner (an index into the n nodes) or -1.

    Every edge draws a priority; an edge is chosen when it has the smallest priority among
    all edges touching either endpoint. Priorities are turned into distinct ranks first: a
    tie between two adjacent edges would otherwise choose both and put one node in two pairs.
    """
    edges = torch.arange(len(u), device=u.device)
    priority = uniform(seed, stream_id(round_, _MATCHING_STEP), edges, 1)[:, 0]
    rank = torch.empty_like(edges)
    rank[priority.argsort(stable=True)] = edges
    if active is not None:
        rank = torch.where(active[u] & active[v], rank, len(u))  # out of the draw
    lowest = torch.full((n,), len(u), dtype=rank.dtype, device=u.device)
    lowest = lowest.scatter_reduce(0, u, rank, "amin").scatter_reduce(0, v, rank, "amin")
    chosen = (rank == lowest[u]) & (rank == lowest[v]) & (rank < len(u))
    partner = torch.full((n,), -1, dtype=torch.int64, device=u.device)
    partner[u[chosen]] = v[chosen]
    partner[v[chosen]] = u[chosen]
    return partner


class Schedule(Protocol):
    def active(self, round_: int, peer: str) -> bool:
        """Whether ``peer`` trains and gossips in round ``round_``."""
        ...

    def partner(self, round_: int, peer: str) -> str | None:
        """Pairwise algorithms: ``peer``'s partner in round ``round_`` (None: it sits out)."""
        ...


class Everyone:
    """Every peer in every round; no shared matching (a deployment has no global view)."""

    def active(self, round_: int, peer: str) -> bool:
        return True

    def partner(self, round_: int, peer: str) -> str | None:
        raise ValueError("synchronous pairwise gossip needs a shared schedule; use mode = async")


class Simulated:
    """The vectorized engine's dropouts and matchings, for real peers of one simulation.

    ``edges`` are the undirected edges the matching draws from, as (u, v) node ids in the
    order the simulator lists them.
    """

    def __init__(
        self, nodes: Sequence[str], edges: Sequence[tuple[str, str]], *, seed: int, dropout_prob: float
    ) -> None:
        self.nodes = list(nodes)
        self.index = {v: i for i, v in enumerate(self.nodes)}
        pairs = torch.tensor([(self.index[a], self.index[b]) for a, b in edges], dtype=torch.int64)
        self.u, self.v = pairs.reshape(-1, 2).unbind(1)
        self.seed = seed
        self.dropout_prob = dropout_prob
        self._ids = torch.arange(len(self.nodes))
        self._rounds: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _round(self, round_: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if round_ not in self._rounds:
            active = ~dropped(self.seed, round_, self._ids, self.dropout_prob)
            self._rounds[round_] = (active, None)
            # Peers of one process are at most a few rounds apart: keep a short window.
            for old in [r for r in self._rounds if r < round_ - 8]:
                del self._rounds[old]
        return self._rounds[round_]

    def active(self, round_: int, peer: str) -> bool:
        return bool(self._round(round_)[0][self.index[peer]])

    def partner(self, round_: int, peer: str) -> str | None:
        active, partners = self._round(round_)
        if partners is None:
            partners = matching(self.u, self.v, len(self.nodes), self.seed, round_, active)
            self._rounds[round_] = (active, partners)
        other = int(partners[self.index[peer]])
        return None if other < 0 else self.nodes[other]
