"""Many real peers in one process and event loop, watched from outside.

``gossipfl launch`` and the simulator's network engine both run a fleet: every peer is a
full ``Peer`` serving HTTP(S) on its own loopback port, exactly as deployed. The fleet only
observes: after each round it snapshots every peer's weights (the peers never see this),
from which it computes the simulator's metrics rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import nn

from gossipfl.config import (
    DataConfig,
    GossipConfig,
    NeighborConfig,
    NetworkConfig,
    PeerConfig,
    TLSConfig,
    TrainConfig,
    links,
)
from gossipfl.learning.stacked import StackedModels
from gossipfl.learning.trainer import Trainer
from gossipfl.node.peer import Peer
from gossipfl.schedule import Schedule

__all__ = ["Fleet", "bind_loopback", "loopback_configs", "make_peers", "wire_loopback"]


def bind_loopback(count: int, host: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` listening-ready sockets on free loopback ports (no race for the ports)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sockets.append(sock)
    return sockets


DEFAULT_GOSSIP = GossipConfig()
_Mass = tuple[torch.Tensor, float] | None  # a push-sum peer's numerator row and mass


def loopback_configs(
    graph: nx.Graph,
    *,
    data: Callable[[int, int], DataConfig],
    train: TrainConfig,
    network: NetworkConfig,
    gossip: GossipConfig = DEFAULT_GOSSIP,
    tls: Callable[[str], TLSConfig | None] = lambda _: None,
    output: Callable[[str], Path | None] = lambda _: None,
) -> list[PeerConfig]:
    """One config per node of ``graph``, to be given ports by ``wire_loopback``."""
    nodes = [str(v) for v in graph.nodes]
    return [
        PeerConfig(
            id=v,
            host="127.0.0.1",
            port=0,
            neighbors=links(graph, v),
            data=data(i, len(nodes)),
            train=train,
            network=network,
            gossip=gossip,
            tls=tls(v),
            output_dir=output(v),
        )
        for i, v in enumerate(nodes)
    ]


def wire_loopback(configs: Sequence[PeerConfig], sockets: Sequence[socket.socket]) -> list[PeerConfig]:
    """``configs`` with listen ports and neighbour URLs pointing at ``sockets``."""
    ports = {c.id: s.getsockname()[1] for c, s in zip(configs, sockets, strict=True)}
    scheme = {c.id: "https" if c.tls else "http" for c in configs}
    return [
        dataclasses.replace(
            c,
            port=ports[c.id],
            neighbors=tuple(
                NeighborConfig(n.id, f"{scheme[n.id]}://127.0.0.1:{ports[n.id]}", n.direction)
                for n in c.neighbors
            ),
        )
        for c in configs
    ]


@dataclasses.dataclass
class Snapshot:
    round: int
    flat: torch.Tensor  # (peers, params), peers in fleet order
    bytes_sent: int
    elapsed_s: float
    train_loss: float | None = None
    average: torch.Tensor | None = None  # the peers' true average (push-sum: sum x / sum w)


class Fleet:
    """Runs ``peers`` to completion, snapshotting all weights every ``every`` rounds."""

    def __init__(self, peers: list[Peer], every: int, on_round: Callable[[], None] = lambda: None) -> None:
        self.peers = peers
        self.every = every
        self.on_round = on_round
        self.snapshots: list[Snapshot] = []
        self._names = list(peers[0].weights)
        self._index = {p.id: i for i, p in enumerate(peers)}
        self._pending: dict[int, dict[int, tuple[torch.Tensor, float, _Mass, int]]] = {}
        self._start = time.perf_counter()
        for peer in peers:
            peer.on_round = self._round_done

    def _row(self, peer: Peer) -> torch.Tensor:
        return torch.cat([peer.weights[n].reshape(-1) for n in self._names])

    def _mass_row(self, peer: Peer) -> tuple[torch.Tensor, float] | None:
        numerator = peer.state.numerator
        if numerator is None:
            return None
        return torch.cat([numerator[n].reshape(-1) for n in self._names]).double(), peer.state.mass

    @staticmethod
    def _average(masses: list[tuple[torch.Tensor, float] | None]) -> torch.Tensor | None:
        if any(m is None for m in masses):
            return None
        pairs = [m for m in masses if m is not None]
        return (sum(x for x, _ in pairs) / sum(w for _, w in pairs)).float()  # type: ignore[union-attr]

    def _round_done(self, peer: Peer, round_: int) -> None:
        self.on_round()
        if round_ % self.every and round_ != peer.config.train.rounds:
            return
        # Each peer is captured at the end of its own round r (faster peers may already be
        # training r+1 when the last one finishes r); the snapshot is complete once all are.
        rows = self._pending.setdefault(round_, {})
        # Bytes as of this peer's round r: a faster peer may already be sending round r+1.
        rows[self._index[peer.id]] = (
            self._row(peer),
            peer.last_loss,
            self._mass_row(peer),
            peer.metrics.bytes_out,
        )
        if len(rows) == len(self.peers):
            del self._pending[round_]
            ordered = [rows[i] for i in range(len(self.peers))]
            losses = [loss for _, loss, _, _ in ordered if loss == loss]  # NaN-free
            self.snapshots.append(
                Snapshot(
                    round_,
                    torch.stack([flat for flat, _, _, _ in ordered]),
                    sum(sent for *_, sent in ordered),
                    time.perf_counter() - self._start,
                    sum(losses) / len(losses) if losses else None,
                    self._average([m for _, _, m, _ in ordered]),
                )
            )

    async def run(self) -> None:
        self._start = time.perf_counter()
        first = torch.stack([self._row(p) for p in self.peers])
        self.snapshots.append(
            Snapshot(0, first, 0, 0.0, average=self._average([self._mass_row(p) for p in self.peers]))
        )
        async with contextlib.AsyncExitStack() as stack:
            for peer in self.peers:
                await peer.start(gossip=False)
                stack.push_async_callback(peer.stop)
            for peer in self.peers:  # every server listens before anyone gossips
                peer.start_gossip()
            await asyncio.gather(*(p.wait() for p in self.peers))

    def rows(
        self,
        model: nn.Module,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        *,
        algorithm: str,
        topology: str,
    ) -> Iterator[dict[str, Any]]:
        """The simulator's metrics rows, one per snapshot."""
        stacked = StackedModels(model, len(self.peers))
        for snap in sorted(self.snapshots, key=lambda s: s.round):
            stacked.replace(snap.flat)
            yield {
                "algorithm": algorithm,
                "topology": topology,
                "peers": len(self.peers),
                "round": snap.round,
                **stacked.evaluate(
                    snap.flat.mean(dim=0) if snap.average is None else snap.average, x_test, y_test
                ),
                "train_loss": snap.train_loss,
                "bytes_sent": snap.bytes_sent,
                "elapsed_s": round(snap.elapsed_s, 4),
            }


def make_peers(
    configs: Sequence[PeerConfig],
    trainers: Sequence[Trainer],
    *,
    insecure: bool,
    sockets: Sequence[socket.socket] | None = None,
    schedule: Schedule | None = None,
) -> list[Peer]:
    return [
        Peer(c, t, insecure=insecure, sock=None if sockets is None else sockets[i], schedule=schedule)
        for i, (c, t) in enumerate(zip(configs, trainers, strict=True))
    ]
