"""A peer: its lifecycle, and the loop of rounds (local training, then the round algorithm).

``async with Peer(config, trainer) as peer: await peer.wait()`` starts the HTTP(S) server and
the gossip task, runs ``config.train.rounds`` rounds, and stops both on exit. Several peers
can share one event loop: a peer holds no global state.

The parts: ``state`` (the authoritative model, ``gossipfl.node.state``), the round algorithm
(``gossipfl.node.rounds``: synchronous rounds or async gossip, mixing through the configured
combine rule), ``neighbours`` (reachability and backoff), the transport (how it reaches
neighbours) and the listener (how neighbours reach it), and the ``recorder`` (checkpoint,
metrics.jsonl, log). Training runs in a thread on a copy; incoming messages are validated
completely before they touch anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gossipfl.algorithms import get_algorithm
from gossipfl.config import NeighborConfig, PeerConfig
from gossipfl.errors import ConfigError, Forbidden, GossipError, Refused, RoundMismatch
from gossipfl.learning.trainer import Trainer
from gossipfl.node.inbox import ROUNDS_AHEAD
from gossipfl.node.neighbours import NeighbourTable
from gossipfl.node.prometheus import PeerMetrics
from gossipfl.node.recorder import Recorder, log
from gossipfl.node.rounds import AsyncGossip, SyncRounds
from gossipfl.node.state import ModelState
from gossipfl.outgoing import make_transform
from gossipfl.rules import make_rule
from gossipfl.schedule import Everyone, Schedule
from gossipfl.transports.channels import HttpTransport, Listener, Transport
from gossipfl.transports.wire import Message, check_tensors, decode, encode

__all__ = ["Peer"]

RoundHook = Callable[["Peer", int], None]
_NUMERATOR = "pushsum.numerator."  # checkpoint state of push-sum peers
_MASS = "pushsum.mass"


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
        schedule: Schedule | None = None,
        listener: Listener | None = None,
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
        self.algorithm = get_algorithm(config.gossip.algorithm)
        self.rule = make_rule(config.gossip.rule)
        self.transform = make_transform(config.gossip.transform)
        self.schedule: Schedule = schedule or Everyone()
        self.state = ModelState(trainer.get_weights(), push_sum=self.algorithm.sender_shares)
        self.template = {k: v.detach().clone() for k, v in self.state.weights.items()}
        self.round = 0
        self.phase = "created"
        self.neighbours = NeighbourTable(config.neighbors)
        self.metrics = PeerMetrics(config.id)
        self.rng = random.Random(zlib.crc32(f"{config.train.seed}:{config.id}".encode()))
        self.port = config.port
        self.last_accuracy = math.nan
        self.last_loss = math.nan
        self.lock = asyncio.Lock()
        self.on_round = on_round
        self.recorder = Recorder(config.id, config.output_dir, config.train.rounds)
        self.rounds: SyncRounds | AsyncGossip = (
            AsyncGossip(self) if config.train.mode == "async" else SyncRounds(self)
        )
        self._transport = transport
        self._sock = sock
        self._slots = asyncio.Semaphore(max_concurrent)
        self._listener = listener
        self._task: asyncio.Task[None] | None = None

    # -- what the parts ask of the peer ----------------------------------------------------

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The current model (for push-sum: numerator / mass)."""
        return self.state.weights

    @property
    def degree(self) -> int:
        """The degree this peer's weights use: out-degree on directed links."""
        if self.algorithm.directed:
            return sum(1 for n in self.config.neighbors if n.sends_to)
        return len(self.neighbours)

    @property
    def own_share(self) -> float:
        """Push-sum: the share of its mass this peer sends each out-neighbour."""
        g = self.config.gossip
        degree = np.asarray(self.degree)
        return float(self.algorithm.neighbour_weight(degree, degree, g.mixing, g.lazy))

    @property
    def round_timeout_s(self) -> float:
        return self.config.network.round_timeout_s

    @property
    def max_body_bytes(self) -> int:
        return self.config.network.max_body_bytes

    @property
    def output_dir(self) -> Path | None:
        return self.config.output_dir

    def weight_of(self, message: Message) -> float:
        """The weight this peer gives ``message`` under its algorithm."""
        g = self.config.gossip
        sender = self.degree if message.degree is None else message.degree
        return float(
            self.algorithm.neighbour_weight(np.asarray(self.degree), np.asarray(sender), g.mixing, g.lazy)
        )

    def encode(self, round_: int) -> bytearray:
        """This peer's round-``round_`` message (after the outgoing transform)."""
        return encode(
            self.state.outgoing(self.transform, round_),
            sender=self.id,
            round_=round_,
            num_samples=self.trainer.num_samples,
            degree=self.degree,
            weight=self.state.mass if self.algorithm.sender_shares else None,
        )

    async def send(
        self, neighbour: NeighborConfig, body: bytes | bytearray, reply: bool
    ) -> bytes | bytearray | None:
        """POST ``body``; the reply (``b""`` without one) or None if the neighbour failed."""
        assert self._transport is not None
        started = time.perf_counter()
        try:
            answer = await self._transport.send(
                neighbour, body, reply=reply, limit_s=self.config.network.request_timeout_s
            )
        except Refused as exc:
            if exc.status == RoundMismatch.status:  # alive, at another round: the caller decides
                raise
            self._failed(neighbour, exc)
            return None
        except GossipError as exc:
            self._failed(neighbour, exc)
            return None
        self.metrics.observe_exchange(time.perf_counter() - started)
        self.metrics.bytes_out += len(body)
        self.neighbours.succeeded(neighbour.id)
        if answer is not None:
            self.metrics.bytes_in += len(answer)
        return answer if reply else b""

    def _failed(self, neighbour: NeighborConfig, exc: GossipError) -> None:
        self.neighbours.failed(neighbour.id, str(exc))
        self.metrics.failures[neighbour.id] += 1
        log.info("%s: skipping %s this round: %s", self.id, neighbour.id, exc)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Peer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, gossip: bool = True) -> None:
        """Start serving, then (unless ``gossip`` is false) the gossip task."""
        from gossipfl.transports.server import HttpListener
        from gossipfl.transports.tls import client_context

        if self._transport is None:
            self._transport = HttpTransport(
                client_context(self.tls) if self.tls else None, self.config.network.max_body_bytes
            )
        if self._listener is None:
            self._listener = HttpListener(self._sock)
        self.port = await self._listener.start(self)
        self.phase = "serving"
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
        if self._listener is not None:
            await self._listener.stop()
        if self._sock is not None:  # a socket handed in but never served still needs closing
            self._sock.close()
        if self._transport is not None:
            await self._transport.close()
        self.recorder.close()
        if self.phase != "done":
            self.phase = "stopped"

    # -- receiving -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._slots.locked()

    def authorize(self, identity: str | None) -> None:
        """Raise ``Forbidden`` (401 or 403) unless the caller whose certificate names
        ``identity`` may send this peer models; the server asks before reading a body."""
        if self.tls is None:
            return
        if identity is None:
            raise Forbidden("a client certificate is required", status=401)
        if not self.neighbours.hears_from(identity):
            raise Forbidden(f"{identity!r} is not a neighbour of {self.id!r}")

    async def receive(self, identity: str | None, body: bytes | bytearray, reply: bool) -> bytearray | None:
        """Handle one POST /gossip. ``identity`` is the caller's certificate name (None on
        plain HTTP). Raises ``WireError``/``Forbidden`` (with an HTTP status) and then
        leaves this peer exactly as it was."""
        async with self._slots:
            self.authorize(identity)
            # Validation (parsing, shape and finiteness checks) runs off the event loop.
            message = await asyncio.to_thread(decode, body, self.template, self.max_body_bytes)
            if identity is not None and message.sender != identity:
                raise Forbidden(
                    f"message claims sender {message.sender!r} but the certificate is {identity!r}"
                )
            if not self.neighbours.hears_from(message.sender):
                raise Forbidden(f"{message.sender!r} is not a neighbour of {self.id!r}")
            self.metrics.bytes_in += len(body)
            # A round no peer of this network can reach is not recorded, so a neighbour
            # cannot make /status show it at any round it likes.
            if message.round <= self.config.train.rounds + ROUNDS_AHEAD:
                self.neighbours.heard_from(message.sender, message.round)
            if isinstance(self.rounds, AsyncGossip):
                answer = await self.rounds.accept_async(message, reply)
            else:
                answer = self.rounds.accept(message, reply)
            if answer is not None:
                self.metrics.bytes_out += len(answer)
            return answer

    # -- the gossip task -------------------------------------------------------------------

    async def _run(self) -> None:
        first = self._restore() + 1
        self.recorder.open(append=first > 1)
        for r in range(first, self.config.train.rounds + 1):
            self.round = r
            started = time.perf_counter()
            loss, reached = math.nan, 0
            if self.schedule.active(r, self.id):
                self.phase = "training"
                loss = await self._train(r)
                self.phase = "gossiping"
                reached = await self.rounds.exchange(r)
            self.metrics.rounds += 1
            await self._after_round(r, loss, reached, time.perf_counter() - started)
        self.phase = "done"

    async def _train(self, round_: int) -> float:
        start = {k: v.clone() for k, v in self.state.weights.items()}

        def work() -> tuple[float, dict[str, torch.Tensor]]:
            self.trainer.set_weights(start)
            loss = self.trainer.fit(round_)
            return loss, self.trainer.get_weights()

        loss, trained = await asyncio.to_thread(work)
        async with self.lock:
            self.state.trained(start, trained, keep_arrivals=isinstance(self.rounds, AsyncGossip))
        return loss

    # -- durability and reporting ----------------------------------------------------------

    def _restore(self) -> int:
        """The last completed round (0 for a fresh start), restoring from the checkpoint."""
        if not self.resume:
            return 0
        checkpoint = self.recorder.restore(self.template, self.trainer)
        if checkpoint is None:
            return 0
        if self.state.numerator is not None:
            self.state.numerator, self.state.mass = self._push_sum_state(checkpoint.state)
        self.state.weights = checkpoint.weights
        return checkpoint.round

    def _push_sum_state(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
        """A checkpoint's push-sum numerator and mass, checked like any model."""
        where = self.recorder.checkpoint_path
        numerator = {k[len(_NUMERATOR) :]: v for k, v in state.items() if k.startswith(_NUMERATOR)}
        mass = state.get(_MASS)
        try:
            check_tensors(numerator, self.template)
        except GossipError as exc:
            raise ConfigError(f"{where}: no usable push-sum numerator ({exc})") from exc
        if mass is None or mass.numel() != 1 or not (math.isfinite(float(mass)) and float(mass) > 0):
            raise ConfigError(f"{where}: push-sum mass must be one finite positive number")
        return numerator, float(mass)

    def _algorithm_state(self) -> dict[str, torch.Tensor]:
        if self.state.numerator is None:
            return {}
        state = {_NUMERATOR + k: v for k, v in self.state.numerator.items()}
        state[_MASS] = torch.tensor(self.state.mass, dtype=torch.float64)
        return state

    async def _after_round(self, round_: int, loss: float, reached: int, seconds: float) -> None:
        def evaluate() -> tuple[float, float]:
            self.trainer.set_weights(self.state.weights)
            return self.trainer.evaluate()

        test_loss, accuracy = await asyncio.to_thread(evaluate)
        self.last_accuracy, self.last_loss = accuracy, loss
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
        await self.recorder.record(
            row, self.state.weights, self.trainer.optimizer_state(), self._algorithm_state()
        )
        if self.on_round is not None:
            self.on_round(self, round_)

    def status(self) -> dict[str, Any]:
        return {
            "peer": self.id,
            "round": self.round,
            "rounds": self.config.train.rounds,
            "state": self.phase,
            "mode": self.config.train.mode,
            "algorithm": self.algorithm.name,
            "degree": self.degree,
            "samples": self.trainer.num_samples,
            "test_accuracy": self.last_accuracy,
            "neighbours": self.neighbours.status(),
        }
