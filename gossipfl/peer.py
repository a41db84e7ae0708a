"""A peer: its weights, its neighbours, and the task that trains and gossips.

``async with Peer(config, trainer) as peer: await peer.wait()`` starts the HTTP(S) server and
the gossip task, runs ``config.train.rounds`` rounds, and stops both on exit. Several peers
can share one event loop: a peer holds no global state.

The peer keeps the authoritative weights itself (``peer.weights``). Training runs in a
thread on a copy; incoming messages are validated completely before they touch anything.

- sync (D-PSGD): train, push round-r weights to every reachable neighbour, wait (bounded by
  ``round_timeout_s``) for theirs, mix with Metropolis–Hastings weights from both degrees.
  A neighbour that does not deliver is skipped: its weight stays with this peer.
- async (gossip learning): train, pick a random reachable neighbour, push-pull over one
  POST /gossip, and both average pairwise. Local progress made meanwhile is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gossipfl.averaging import average_states
from gossipfl.checkpoint import restore_checkpoint, save_checkpoint
from gossipfl.config import NeighborConfig, PeerConfig
from gossipfl.errors import ConfigError, Forbidden, GossipError
from gossipfl.neighbours import NeighbourTable
from gossipfl.prometheus import PeerMetrics
from gossipfl.rundir import JsonlWriter
from gossipfl.trainer import Trainer
from gossipfl.transport import HttpTransport, Transport
from gossipfl.wire import Message, decode, encode
from topologies.mixing import metropolis_hastings_weight

if TYPE_CHECKING:
    from gossipfl.server import Serving

__all__ = ["Peer"]

log = logging.getLogger("gossipfl.peer")

CHECKPOINT = "checkpoint.safetensors"
_ROUNDS_AHEAD = 2
RoundHook = Callable[["Peer", int], None]


class Peer:
    def __init__(
        self,
        config: PeerConfig,
        trainer: Trainer,
        *,
        insecure: bool = False,
        resume: bool = False,
        transport: Transport | None = None,
        sock: socket.socket | None = None,
        on_round: RoundHook | None = None,
        max_concurrent: int = 8,
    ) -> None:
        if config.tls is None and not insecure:
            raise ConfigError(
                f"{config.source or config.id}: no [tls] table; run `gossipfl certs` on the config "
                "directory, or pass --insecure for plain HTTP on a trusted local network"
            )
        self.config = config
        self.trainer = trainer
        self.tls = None if insecure else config.tls
        self.resume = resume
        self.weights = trainer.get_weights()
        self.template = {k: v.detach().clone() for k, v in self.weights.items()}
        self.round = 0
        self.state = "created"
        self.neighbours = NeighbourTable(config.neighbors)
        self.metrics = PeerMetrics(config.id)
        self.rng = random.Random(zlib.crc32(f"{config.train.seed}:{config.id}".encode()))
        self.port = config.port
        self.last_accuracy = math.nan
        self.last_loss = math.nan
        self._transport = transport
        self._sock = sock
        self._on_round = on_round
        self._inbox: dict[int, dict[str, Message]] = {}
        self._arrived = asyncio.Event()
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._serving: Serving | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer: JsonlWriter | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def degree(self) -> int:
        return len(self.neighbours)

    @property
    def output_dir(self) -> Path | None:
        return self.config.output_dir

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Peer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, gossip: bool = True) -> None:
        """Start serving, then (unless ``gossip`` is false) the gossip task."""
        from gossipfl.server import serve
        from gossipfl.tls import client_context, server_context

        ssl_server = server_context(self.tls) if self.tls else None
        if self._transport is None:
            self._transport = HttpTransport(
                client_context(self.tls) if self.tls else None, self.config.network.max_body_bytes
            )
        self._serving = await serve(self, ssl_server, self._sock)
        self.port = self._serving.port
        self.state = "serving"
        if gossip:
            self.start_gossip()

    def start_gossip(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"gossip-{self.id}")

    async def wait(self) -> None:
        """Return when every round is done (re-raises what stopped the gossip task)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._serving is not None:
            await self._serving.close()
            self._serving = None
        if self._sock is not None:  # a socket handed in but never served still needs closing
            self._sock.close()
        if self._transport is not None:
            await self._transport.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.state != "done":
            self.state = "stopped"

    # -- receiving -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._slots.locked()

    def authorize(self, identity: str | None) -> None:
        """Raise ``Forbidden`` (401 or 403) unless the caller whose certificate names
        ``identity`` may gossip with this peer; the server asks before reading a body."""
        if self.tls is None:
            return
        if identity is None:
            raise Forbidden("a client certificate is required", status=401)
        if identity not in self.neighbours:
            raise Forbidden(f"{identity!r} is not a neighbour of {self.id!r}")

    async def receive(self, identity: str | None, body: bytes | bytearray, reply: bool) -> bytearray | None:
        """Handle one POST /gossip. ``identity`` is the caller's certificate name (None on
        plain HTTP). Raises ``WireError``/``Forbidden`` (with an HTTP status) and then
        leaves this peer exactly as it was."""
        async with self._slots:
            self.authorize(identity)
            # Validation (parsing, shape and finiteness checks) runs off the event loop.
            message = await asyncio.to_thread(decode, body, self.template, self.config.network.max_body_bytes)
            if identity is not None and message.sender != identity:
                raise Forbidden(
                    f"message claims sender {message.sender!r} but the certificate is {identity!r}"
                )
            if message.sender not in self.neighbours:
                raise Forbidden(f"{message.sender!r} is not a neighbour of {self.id!r}")
            self.metrics.bytes_in += len(body)
            # A round no peer of this network can reach is not recorded, so a neighbour
            # cannot make /status show it at any round it likes.
            if message.round <= self.config.train.rounds + _ROUNDS_AHEAD:
                self.neighbours.heard_from(message.sender, message.round)
            if self.config.train.mode == "async":
                return await self._average_pairwise(message, reply)
            # Only rounds this peer can still use are kept: a neighbour at most a couple of
            # rounds ahead, so a buggy or hostile one cannot park unbounded models here.
            if self.round <= message.round <= self.round + _ROUNDS_AHEAD:
                self._inbox.setdefault(message.round, {})[message.sender] = message
                self._arrived.set()
            return self.encode_weights(self.round) if reply else None

    async def _average_pairwise(self, message: Message, reply: bool) -> bytearray | None:
        async with self._lock:
            answer = self.encode_weights(self.round) if reply else None
            self.weights = average_states([self.weights, message.tensors], [0.5, 0.5])
        if answer is not None:
            self.metrics.bytes_out += len(answer)
        return answer

    def encode_weights(self, round_: int) -> bytearray:
        return encode(
            self.weights,
            sender=self.id,
            round_=round_,
            num_samples=self.trainer.num_samples,
            degree=self.degree,
        )

    # -- the gossip task -------------------------------------------------------------------

    async def _run(self) -> None:
        first = self._restore() + 1
        self._open_metrics(append=first > 1)
        rounds = self.config.train.rounds
        for r in range(first, rounds + 1):
            self.round = r
            started = time.perf_counter()
            self.state = "training"
            loss = await self._train(r)
            self.state = "gossiping"
            if self.config.train.mode == "sync":
                reached = await self._sync_exchange(r)
            else:
                reached = await self._async_exchange()
            self.metrics.rounds += 1
            await self._after_round(r, loss, reached, time.perf_counter() - started)
        self.state = "done"

    async def _train(self, round_: int) -> float:
        start = {k: v.clone() for k, v in self.weights.items()}

        def work() -> tuple[float, dict[str, torch.Tensor]]:
            self.trainer.set_weights(start)
            loss = self.trainer.fit(round_)
            return loss, self.trainer.get_weights()

        loss, trained = await asyncio.to_thread(work)
        async with self._lock:
            if self.config.train.mode == "sync":
                self.weights = trained
            else:  # keep whatever pairwise averages arrived while training ran
                self.weights = {k: self.weights[k] + (trained[k] - start[k]) for k in trained}
        return loss

    async def _send(
        self, neighbour: NeighborConfig, body: bytes | bytearray, reply: bool
    ) -> bytes | bytearray | None:
        assert self._transport is not None
        started = time.perf_counter()
        try:
            answer = await self._transport.send(
                neighbour, body, reply=reply, limit_s=self.config.network.request_timeout_s
            )
        except GossipError as exc:
            self.neighbours.failed(neighbour.id, str(exc))
            self.metrics.failures[neighbour.id] += 1
            log.info("%s: skipping %s this round: %s", self.id, neighbour.id, exc)
            return None
        self.metrics.observe_exchange(time.perf_counter() - started)
        self.metrics.bytes_out += len(body)
        self.neighbours.succeeded(neighbour.id)
        if answer is not None:
            self.metrics.bytes_in += len(answer)
        return answer if reply else b""

    async def _sync_exchange(self, round_: int) -> int:
        body = self.encode_weights(round_)
        targets = self.neighbours.reachable()
        sent = await asyncio.gather(*(self._send(n, body, reply=False) for n in targets))
        expected = {n.id for n, ok in zip(targets, sent, strict=True) if ok is not None}
        await self._wait_for(round_, expected)
        received = self._inbox.pop(round_, {})
        for stale in [r for r in self._inbox if r < round_]:
            del self._inbox[stale]
        weights = [
            metropolis_hastings_weight(self.degree, m.degree or self.degree) for m in received.values()
        ]
        async with self._lock:
            self.weights = average_states(
                [self.weights, *(m.tensors for m in received.values())], [1.0 - sum(weights), *weights]
            )
        return len(received)

    async def _wait_for(self, round_: int, expected: set[str]) -> None:
        deadline = time.monotonic() + self.config.network.round_timeout_s
        while not expected <= self._inbox.get(round_, {}).keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(expected - self._inbox.get(round_, {}).keys())
                for peer in missing:
                    self.neighbours.failed(peer, f"no round-{round_} model within the round timeout")
                log.info("%s: round %d went on without %s", self.id, round_, ", ".join(missing))
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue

    async def _async_exchange(self) -> int:
        neighbour = self.neighbours.pick(self.rng)
        if neighbour is None:
            return 0
        answer = await self._send(neighbour, self.encode_weights(self.round), reply=True)
        if not answer:
            return 0
        try:
            message = await asyncio.to_thread(
                decode, answer, self.template, self.config.network.max_body_bytes
            )
        except GossipError as exc:
            self.neighbours.failed(neighbour.id, f"bad reply: {exc}")
            return 0
        async with self._lock:
            self.weights = average_states([self.weights, message.tensors], [0.5, 0.5])
        return 1

    # -- durability and reporting ----------------------------------------------------------

    def _restore(self) -> int:
        """The last completed round (0 for a fresh start), restoring from the checkpoint."""
        path = self.output_dir / CHECKPOINT if self.output_dir else None
        if not self.resume:
            return 0
        if path is None or not path.is_file():
            log.warning("%s: --resume but no checkpoint at %s; starting fresh", self.id, path)
            return 0
        checkpoint = restore_checkpoint(path, self.id, self.template, self.trainer)
        self.weights = checkpoint.weights
        log.info("%s: resumed from round %d", self.id, checkpoint.round)
        return checkpoint.round

    def _open_metrics(self, append: bool) -> None:
        if self.output_dir is not None:
            self._writer = JsonlWriter(self.output_dir / "metrics.jsonl", append=append)

    async def _after_round(self, round_: int, loss: float, reached: int, seconds: float) -> None:
        def evaluate() -> tuple[float, float]:
            self.trainer.set_weights(self.weights)
            return self.trainer.evaluate()

        test_loss, accuracy = await asyncio.to_thread(evaluate)
        self.last_accuracy, self.last_loss = accuracy, loss
        if self.output_dir is not None:
            await asyncio.to_thread(
                save_checkpoint,
                self.output_dir / CHECKPOINT,
                round_,
                self.weights,
                self.trainer.optimizer_state(),
                self.id,
            )
        row: dict[str, Any] = {
            "peer": self.id,
            "round": round_,
            "test_accuracy": accuracy,
            "test_loss": test_loss,
            "train_loss": loss,
            "bytes_in": self.metrics.bytes_in,
            "bytes_out": self.metrics.bytes_out,
            "neighbours_reached": reached,
            "degree": self.degree,
            "seconds": round(seconds, 4),
        }
        if self._writer is not None:
            self._writer.write(row)
        log.info(
            "%s round %d/%d  loss %.4f  test acc %.4f  neighbours %d/%d  %.2fs",
            self.id,
            round_,
            self.config.train.rounds,
            loss,
            accuracy,
            reached,
            self.degree,
            seconds,
        )
        if self._on_round is not None:
            self._on_round(self, round_)

    def status(self) -> dict[str, Any]:
        return {
            "peer": self.id,
            "round": self.round,
            "rounds": self.config.train.rounds,
            "state": self.state,
            "mode": self.config.train.mode,
            "degree": self.degree,
            "samples": self.trainer.num_samples,
            "test_accuracy": self.last_accuracy,
            "neighbours": self.neighbours.status(),
        }
