"""The peer's protocol without sockets (in-memory transport and listener), against the exact
mixing matrix, and the parts a peer is made of."""

import asyncio

import networkx as nx
import numpy as np
import pytest
import torch

import topologies as t
from gossipfl.config import DataConfig, NetworkConfig, PeerConfig
from gossipfl.errors import RoundMismatch
from gossipfl.learning.trainer import build_trainer
from gossipfl.node.inbox import ROUNDS_AHEAD, Inbox
from gossipfl.node.peer import Peer
from gossipfl.node.state import ModelState
from gossipfl.transports.channels import MemoryListener, MemoryTransport
from gossipfl.transports.wire import Message
from sim.fleet import loopback_configs


def memory_peers(graph: nx.Graph, train_config, **gossip: object) -> list[Peer]:  # type: ignore[no-untyped-def]
    import dataclasses

    from gossipfl.config import GossipConfig

    configs = loopback_configs(
        graph,
        data=lambda part, parts: DataConfig(dataset="iris", part=part, parts=parts),
        train=train_config(rounds=1, lr=0.0),
        network=NetworkConfig(round_timeout_s=5.0, request_timeout_s=5.0),
        gossip=GossipConfig(**gossip),  # type: ignore[arg-type]
    )
    registry: dict = {}  # type: ignore[type-arg]
    peers = []
    for i, c in enumerate(configs):
        c = dataclasses.replace(c, neighbors=c.neighbors)
        peer = Peer(
            c,
            build_trainer(c.id, c.data, c.train),
            insecure=True,
            transport=MemoryTransport(c.id, registry),
            listener=MemoryListener(registry),
        )
        # Distinct starting models, so one round of mixing is visible.
        gen = torch.Generator().manual_seed(i)
        weights = {k: torch.randn(v.shape, generator=gen) for k, v in peer.weights.items()}
        peer.state = ModelState(weights, push_sum=peer.algorithm.sender_shares)
        peers.append(peer)
    return peers


def rows(peers: list[Peer]) -> np.ndarray:
    return np.stack([torch.cat([p.weights[k].reshape(-1) for k in sorted(p.weights)]).numpy() for p in peers])


async def run_all(peers: list[Peer]) -> None:
    for p in peers:
        await p.start(gossip=False)
    try:
        for p in peers:
            p.start_gossip()
        await asyncio.gather(*(p.wait() for p in peers))
    finally:
        for p in peers:
            await p.stop()


async def test_one_real_round_on_an_irregular_graph_is_w_times_x(train_config) -> None:  # type: ignore[no-untyped-def]
    # A peer that ignored its neighbours' degrees would mix a star differently from MH.
    graph = t.star(5)
    peers = memory_peers(graph, train_config)
    before = rows(peers)
    await run_all(peers)
    w = t.metropolis_hastings(graph).toarray()
    np.testing.assert_allclose(rows(peers), w @ before, atol=1e-5)


async def test_one_real_push_sum_round_is_p_times_x(train_config) -> None:  # type: ignore[no-untyped-def]
    graph = t.directed_ring(4)
    graph.add_edge("p0", "p2")
    peers = memory_peers(graph, train_config, algorithm="pushsum")
    before = rows(peers)
    await run_all(peers)
    p = t.push_sum(graph).toarray()
    mass = p @ np.ones(4)
    np.testing.assert_allclose(rows(peers), (p @ before) / mass[:, None], atol=1e-5)
    assert [peer.state.mass for peer in peers] == pytest.approx(list(mass))


def test_inbox_keeps_usable_rounds_and_says_why_it_refuses_others() -> None:
    inbox = Inbox()
    message = Message({}, "b", 5, 1)
    inbox.offer(message, current=4)
    with pytest.raises(RoundMismatch) as early:
        inbox.offer(Message({}, "b", 5 + ROUNDS_AHEAD, 1), current=4)
    assert early.value.reason == "too_early"
    with pytest.raises(RoundMismatch) as stale:
        inbox.offer(Message({}, "b", 3, 1), current=4)
    assert stale.value.reason == "stale"
    assert inbox.take(5) == {"b": message} and len(inbox) == 0


async def test_inbox_wait_returns_the_missing_after_the_timeout() -> None:
    inbox = Inbox()
    inbox.offer(Message({}, "b", 1, 1), current=1)
    assert await inbox.wait(1, {"b", "c"}, timeout_s=0.05) == {"c"}


def test_sync_pairwise_gossip_needs_a_shared_schedule() -> None:
    config = PeerConfig("a", "127.0.0.1", 0, ())
    from gossipfl.schedule import Everyone

    assert Everyone().active(3, config.id)
    with pytest.raises(ValueError, match="async"):
        Everyone().partner(3, config.id)
