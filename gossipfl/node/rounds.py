"""The round algorithms a peer runs: what it does after local training in each round, and
what it does with a model a neighbour sends it.

- ``SyncRounds`` (dpsgd, pushsum, and pairwise gossip on a shared schedule): send round r's
  model to this round's targets, wait (bounded by ``round_timeout_s``) for this round's
  senders, then mix with the algorithm's weights through the combine rule. A neighbour that
  does not deliver is skipped; its weight stays with this peer.
- ``AsyncGossip`` (gossip learning): push-pull with one random reachable neighbour; both
  sides mix pairwise as each message arrives.

Weights come from ``gossipfl.algorithms`` and mixing from ``gossipfl.rules``: the functions
the vectorized simulator evaluates for all peers at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from gossipfl.errors import GossipError, ModelMismatch, Refused
from gossipfl.node.inbox import Inbox
from gossipfl.transports.wire import Message, decode

if TYPE_CHECKING:
    from gossipfl.config import NeighborConfig
    from gossipfl.node.peer import Peer

__all__ = ["AsyncGossip", "RoundAlgorithm", "SyncRounds"]

log = logging.getLogger("gossipfl.node.peer")


class SyncRounds:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.inbox = Inbox()

    def accept(self, message: Message, reply: bool) -> bytearray | None:
        """A round's model from a neighbour: kept for its round (if usable)."""
        peer = self.peer
        if peer.algorithm.sender_shares and message.weight is None:
            raise ModelMismatch("a push-sum message must carry its sender's weight")
        self.inbox.offer(message, peer.round)
        return peer.encode(peer.round) if reply else None

    def _targets(self, round_: int) -> list[NeighborConfig]:
        peer = self.peer
        if peer.algorithm.pairwise:
            partner = peer.schedule.partner(round_, peer.id)
            return [n for n in peer.neighbours.reachable() if n.id == partner]
        return [
            n for n in peer.neighbours.reachable() if n.sends_to and peer.schedule.active(round_, n.id)
        ]

    def _expected(self, round_: int, delivered: set[str]) -> set[str]:
        peer = self.peer
        if not peer.algorithm.directed:
            return delivered  # undirected: whoever we reached sends to us too
        return {
            n.id for n in peer.neighbours.reachable() if n.hears_from and peer.schedule.active(round_, n.id)
        }

    async def _push(self, neighbour: NeighborConfig, body: bytearray, deadline: float) -> bool:
        """Deliver ``body``; a neighbour still a few rounds behind is retried until ``deadline``."""
        delay = 0.01
        while True:
            try:
                return await self.peer.send(neighbour, body, reply=False) is not None
            except Refused as exc:
                if not exc.reason.startswith("too_early") or time.monotonic() + delay > deadline:
                    return False
            await asyncio.sleep(delay)
            delay = min(2 * delay, 0.5)

    async def exchange(self, round_: int) -> int:
        peer = self.peer
        body = peer.encode(round_)
        targets = self._targets(round_)
        deadline = time.monotonic() + peer.round_timeout_s
        results = await asyncio.gather(*(self._push(n, body, deadline) for n in targets))
        delivered = {n.id for n, ok in zip(targets, results, strict=True) if ok}
        missing = await self.inbox.wait(round_, self._expected(round_, delivered), peer.round_timeout_s)
        for other in sorted(missing):
            peer.neighbours.failed(other, f"no round-{round_} model within the round timeout")
        if missing:
            log.info("%s: round %d went on without %s", peer.id, round_, ", ".join(sorted(missing)))
        received = list(self.inbox.take(round_).values())
        if peer.algorithm.pairwise:
            received = [m for m in received if m.sender in delivered]
        weights = [peer.weight_of(m) for m in received]
        # Push-sum keeps the shares it did not deliver; the others keep what they did not receive.
        sent = len(delivered) * peer.own_share
        own = 1.0 - (sent if peer.algorithm.sender_shares else sum(weights))
        async with peer.lock:
            peer.state.combine(
                peer.rule,
                [m.tensors for m in received],
                weights,
                own,
                [m.weight or 0.0 for m in received],
            )
        return len(received)


class AsyncGossip:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def _mix(self, message: Message) -> None:
        peer = self.peer
        weight = peer.weight_of(message)
        peer.state.combine(peer.rule, [message.tensors], [weight], 1.0 - weight)

    async def accept_async(self, message: Message, reply: bool) -> bytearray | None:
        peer = self.peer
        async with peer.lock:
            answer = peer.encode(peer.round) if reply else None
            await self._mix(message)
        return answer

    async def exchange(self, round_: int) -> int:
        peer = self.peer
        neighbour = peer.neighbours.pick(peer.rng)
        if neighbour is None:
            return 0
        answer = await peer.send(neighbour, peer.encode(peer.round), reply=True)
        if not answer:
            return 0
        try:
            message = await asyncio.to_thread(decode, answer, peer.template, peer.max_body_bytes)
        except GossipError as exc:
            peer.neighbours.failed(neighbour.id, f"bad reply: {exc}")
            return 0
        async with peer.lock:
            await self._mix(message)
        return 1


RoundAlgorithm = SyncRounds | AsyncGossip
