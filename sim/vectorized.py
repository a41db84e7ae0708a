"""The vectorized engine: every peer's model a row of one tensor, every round one batched
local-SGD call and one exchange.

A decentralized algorithm is ``gossipfl.algorithms`` (who sends to whom, with which weights)
plus a combine rule (``gossipfl.rules``) and an outgoing transform (``gossipfl.outgoing``),
the same objects a real peer uses. Each round the engine turns the algorithm's links into the
round's weight matrix ``W_r`` (dropped peers and unmatched pairs removed, their weight left
with the peer), then mixes: a linear rule as one sparse product ``W_r @ X``, any other rule
through the generic path, which hands each peer its received models and weights exactly as a
real peer sees them. The round loop, sampling, evaluation and byte accounting are shared by
all algorithms and the baselines, so they are compared on the same data stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch

from gossipfl.algorithms import Algorithm, get_algorithm
from gossipfl.learning.stacked import PeerData, StackedModels
from gossipfl.outgoing import OutgoingTransform, make_transform
from gossipfl.rules import CombineRule, WeightedMean, make_rule
from gossipfl.schedule import dropped, matching
from gossipfl.transports.wire import MessageSize
from sim.config import SimConfig
from sim.task import Task

__all__ = ["GossipExchange", "run_vectorized"]

Row = dict[str, Any]

# Stacks above this many floats are mixed in place, a block of columns at a time.
_IN_PLACE_FLOATS = 1 << 26
# The generic path gathers at most this many received floats at once.
_GATHER_FLOATS = 1 << 24


def _mix_columns(matrix: sp.csr_matrix, x: torch.Tensor) -> torch.Tensor:
    """``W @ x``. Columns mix independently, so a very large stack (10,000 peers) is mixed in
    place one block of columns at a time instead of allocating a second copy of it."""
    if x.numel() <= _IN_PLACE_FLOATS:
        return torch.from_numpy(matrix @ x.numpy())
    array = x.numpy()
    width = max(1, (1 << 22) // x.shape[0])
    for start in range(0, x.shape[1], width):
        block = array[:, start : start + width]
        block[...] = matrix @ np.ascontiguousarray(block)
    return x


class _Round:
    """One round's mixing: the links that carry a message, their weights, each peer's own."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor, own: torch.Tensor) -> None:
        self.src, self.dst, self.weight, self.own = src, dst, weight, own
        self._product: Callable[[torch.Tensor], torch.Tensor] | None = None

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """``W_r @ x`` with W_r's diagonal the peers' own weights."""
        if self._product is None:
            n = len(self.own)
            rows = torch.cat([self.dst, torch.arange(n, device=self.own.device)])
            cols = torch.cat([self.src, torch.arange(n, device=self.own.device)])
            vals = torch.cat([self.weight, self.own]).float()
            if vals.device.type == "cpu":
                # scipy's CSR product is over twice as fast as torch's sparse kernels on CPU.
                matrix = sp.csr_matrix((vals.numpy(), (rows.numpy(), cols.numpy())), shape=(n, n))
                self._product = lambda y: _mix_columns(matrix, y)
            else:
                coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n)).coalesce()
                self._product = lambda y: coo @ y
        return self._product(x)

    def gathered(self, sent: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What peers ``start..stop-1`` received, padded to (n, K, P), and the weights (n, K)."""
        keep = (self.dst >= start) & (self.dst < stop)
        dst, src, weight = self.dst[keep] - start, self.src[keep], self.weight[keep]
        order = torch.argsort(dst, stable=True)
        dst, src, weight = dst[order], src[order], weight[order]
        count = torch.bincount(dst, minlength=stop - start)
        width = int(count.max()) if len(count) else 0
        first = torch.cumsum(count, 0) - count
        slot = torch.arange(len(dst), device=dst.device) - first[dst]
        received = sent.new_zeros(stop - start, width, sent.shape[1])
        weights = torch.zeros(stop - start, width, dtype=torch.float64, device=sent.device)
        received[dst, slot] = sent[src]
        weights[dst, slot] = weight
        return received, weights

    def combine(
        self, rule: CombineRule, own: torch.Tensor, sent: torch.Tensor, generic: bool
    ) -> torch.Tensor:
        """Every peer's new state under ``rule`` (``sent`` is what each peer sent)."""
        if rule.linear and not generic:
            if sent is own:
                return self.product(own)
            mixed = self.product(sent) - sent * self.own[:, None].to(sent.dtype)
            return mixed.add_(own * self.own[:, None].to(own.dtype))
        width = int(torch.bincount(self.dst, minlength=len(self.own)).max()) if len(self.dst) else 0
        block = max(1, _GATHER_FLOATS // max(1, width * own.shape[1]))
        out = []
        for start in range(0, len(self.own), block):
            stop = min(start + block, len(self.own))
            received, weights = self.gathered(sent, start, stop)
            out.append(rule.combine(own[start:stop], received, weights, self.own[start:stop]))
        return torch.cat(out)


class GossipExchange:
    """A decentralized algorithm's exchange for all peers of ``graph`` at once.

    ``generic`` forces the generic path even for linear rules (tests compare both).
    """

    def __init__(
        self,
        algorithm: Algorithm,
        graph: nx.Graph,
        *,
        rule: CombineRule,
        transform: OutgoingTransform,
        mixing: str = "metropolis",
        lazy: bool = False,
        seed: int = 0,
        device: torch.device | None = None,
        generic: bool = False,
    ) -> None:
        algorithm.check_graph(graph, mixing)  # type: ignore[arg-type]
        device = device or torch.device("cpu")
        self.algorithm, self.rule, self.transform = algorithm, rule, transform
        self.seed, self.generic = seed, generic
        self.nodes = [str(v) for v in graph.nodes]
        index = {v: i for i, v in enumerate(graph.nodes)}
        n = self.n = len(index)
        if algorithm.directed:
            directed = graph if graph.is_directed() else graph.to_directed()
            pairs = np.array([(index[a], index[b]) for a, b in directed.edges if a != b], dtype=np.int64)
            src, dst = pairs.reshape(-1, 2).T
            self.degree = np.bincount(src, minlength=n)  # out-degree: a sender's share
        else:
            pairs = np.array([(index[a], index[b]) for a, b in graph.edges if a != b], dtype=np.int64)
            u, v = pairs.reshape(-1, 2).T
            src, dst = np.concatenate([u, v]), np.concatenate([v, u])
            self.degree = np.bincount(src, minlength=n)
            self.pair_u = torch.from_numpy(u.copy()).to(device)
            self.pair_v = torch.from_numpy(v.copy()).to(device)
        weight = algorithm.neighbour_weight(self.degree[dst], self.degree[src], mixing, lazy)  # type: ignore[arg-type]
        self.src = torch.from_numpy(src.copy()).to(device)
        self.dst = torch.from_numpy(dst.copy()).to(device)
        self.weight = torch.from_numpy(weight).to(device)
        self._full: _Round | None = None
        self.numerators: torch.Tensor | None = None
        self.mass: torch.Tensor | None = None
        self.before: torch.Tensor | None = None

    def round_for(self, round_: int, active: torch.Tensor | None) -> _Round:
        """Round ``round_``'s links: both ends active and, for pairwise gossip, matched."""
        if active is None and not self.algorithm.pairwise:
            if self._full is None:
                self._full = self._make(torch.ones_like(self.src, dtype=torch.bool))
            return self._full
        keep = torch.ones_like(self.src, dtype=torch.bool)
        if active is not None:
            keep &= active[self.src] & active[self.dst]
        if self.algorithm.pairwise:
            partner = matching(self.pair_u, self.pair_v, self.n, self.seed, round_, active)
            keep &= partner[self.dst] == self.src
        return self._make(keep)

    def _make(self, keep: torch.Tensor) -> _Round:
        src, dst, weight = self.src[keep], self.dst[keep], self.weight[keep]
        owner = src if self.algorithm.sender_shares else dst
        given = torch.zeros(self.n, dtype=weight.dtype, device=weight.device).index_add_(0, owner, weight)
        return _Round(src, dst, weight, 1.0 - given)

    def before_train(self, models: StackedModels) -> None:
        if self.algorithm.sender_shares:
            if self.numerators is None:
                self.numerators = models.flat.clone()
                self.mass = torch.ones(models.peers, 1, dtype=torch.float64, device=models.flat.device)
            self.before = models.flat.clone()

    def exchange(self, models: StackedModels, round_: int, active: torch.Tensor | None) -> _Round:
        """Mix every peer's model; returns the round's links (for byte accounting)."""
        links = self.round_for(round_, active)
        if not self.algorithm.sender_shares:
            sent = self.transform.apply(models.flat, round_)
            models.replace(links.combine(self.rule, models.flat, sent, self.generic))
            return links
        assert self.numerators is not None and self.mass is not None and self.before is not None
        # Push-sum SGD: a local step moves the numerator by what it moved the model.
        self.numerators += models.flat - self.before
        sent = self.transform.apply(self.numerators, round_)
        self.numerators = links.combine(self.rule, self.numerators, sent, self.generic)
        self.mass = links.combine(self.rule, self.mass, self.mass, self.generic)
        models.replace(self.numerators / self.mass)
        return links

    def average(self, models: StackedModels) -> torch.Tensor:
        if self.numerators is not None and self.mass is not None:
            return (self.numerators.sum(dim=0) / self.mass.sum()).to(models.flat.dtype)
        return models.flat.mean(dim=0)


class _FedAvgExchange:
    """FedAvg: a server sends the global model to a sampled fraction of clients and
    replaces it by their sample-weighted average (the weighted-mean rule) after training."""

    def __init__(self, sizes: torch.Tensor, fraction: float, gen: torch.Generator) -> None:
        self.sizes = sizes.double()
        self.count = max(1, round(fraction * len(sizes)))
        self.gen = gen
        self.selected = torch.ones(len(sizes), dtype=torch.bool, device=sizes.device)
        self.rule = WeightedMean()

    def select(self) -> torch.Tensor:
        n = len(self.sizes)
        if self.count < n:
            pick = torch.randperm(n, generator=self.gen)[: self.count].to(self.sizes.device)
            self.selected = torch.zeros(n, dtype=torch.bool, device=self.sizes.device)
            self.selected[pick] = True
        return self.selected

    def exchange(self, models: StackedModels, active: torch.Tensor) -> int:
        reporting = self.selected & active
        if not bool(reporting.any()):
            return 0
        weights = (self.sizes[reporting] / self.sizes[reporting].sum())[None, :]
        keeps = torch.zeros(1, dtype=torch.float64)  # the previous global model keeps no weight
        mixed = self.rule.combine(models.flat[:1], models.flat[reporting][None], weights, keeps)
        models.flat.copy_(mixed.expand_as(models.flat))
        return 2 * int(reporting.sum())  # each reporting client downloads and uploads once


def exchange_for(config: SimConfig, algorithm: str, graph: nx.Graph, device: torch.device) -> GossipExchange:
    """The exchange ``config`` asks for on ``graph`` (checks the pair before any run starts)."""
    return GossipExchange(
        get_algorithm(algorithm),
        graph,
        rule=make_rule(config.rule),
        transform=make_transform(config.transform),
        mixing=config.mixing_rule,
        lazy=config.lazy,
        seed=config.seed,
        device=device,
    )


class _Bytes:
    """Exact bytes of the messages real peers would send: their metadata (sender id, round,
    sample count, degree) varies in length from peer to peer and round to round."""

    def __init__(self, models: StackedModels, exchange: GossipExchange, parts: list[np.ndarray]) -> None:
        # A peer sends what the stack holds: parameters and float buffers, not integer ones.
        self.message_size = MessageSize(models.unflatten(models.flat[0]))
        self.exchange = exchange
        self.samples = [len(p) for p in parts]
        self._by_digits: dict[int, torch.Tensor] = {}

    def _size(self, i: int, round_: int) -> int:
        ex = self.exchange
        return self.message_size(
            sender=ex.nodes[i],
            round_=round_,
            num_samples=self.samples[i],
            degree=int(ex.degree[i]),
            # The push-sum weight is written at a fixed width, so any value sizes it.
            weight=1.0 if ex.algorithm.sender_shares else None,
        )

    def __call__(self, links: _Round, round_: int) -> int:
        digits = len(str(round_))  # only the round's length varies over a run
        if digits not in self._by_digits:
            sizes = [self._size(i, round_) for i in range(self.exchange.n)]
            self._by_digits[digits] = torch.tensor(sizes, dtype=torch.int64)
        counts = torch.bincount(links.src.cpu(), minlength=self.exchange.n)
        return int((counts * self._by_digits[digits]).sum())


def run_vectorized(
    config: SimConfig,
    task: Task,
    algorithm: str,
    topology: str,
    graph: nx.Graph | None,
    parts: list[np.ndarray],
    on_round: Callable[[], None] = lambda: None,
) -> Iterator[Row]:
    """Run one algorithm or baseline; yield a metrics row at round 0, every ``eval_every``
    rounds and at the last round. ``on_round`` is called after every round (progress bars)."""
    train = config.train
    peers = len(parts)
    batch = train.batch_size
    if algorithm == "central":
        parts = [np.sort(np.concatenate(parts))]
        batch *= peers  # as many sample-gradients per step as all peers together
    device = task.device
    data = PeerData(parts, task.x_train, task.y_train, device, seed=config.seed)
    models = StackedModels(
        task.new_model(), len(parts), init=config.init, seed=config.seed, device=device, loss_fn=task.loss_fn
    )
    # Client sampling has its own generator; minibatches, dropouts and matchings are
    # counter-based draws that real peers reproduce.
    fedavg = (
        _FedAvgExchange(
            data.lengths, config.client_fraction, torch.Generator().manual_seed(config.seed + 2)
        )
        if algorithm == "fedavg"
        else None
    )
    gossip = None
    if fedavg is None and algorithm != "central":
        assert graph is not None
        gossip = exchange_for(config, algorithm, graph, device)
    count_bytes = None if gossip is None else _Bytes(models, gossip, parts)
    ids = torch.arange(len(parts), device=device)
    label = {"central": "pooled", "fedavg": "server"}.get(algorithm, topology)
    sent = 0
    start = time.perf_counter()

    def row(round_: int, loss: float | None) -> Row:
        if gossip is not None:
            metrics: dict[str, float | None] = {
                **models.evaluate(gossip.average(models), task.x_test, task.y_test)
            }
        else:  # every client holds the one global model
            accuracy = models.accuracy(models.flat[0], task.x_test, task.y_test)
            metrics = {
                "consensus_distance": None,
                "test_accuracy": accuracy,
                "peer_accuracy_mean": accuracy,
                "peer_accuracy_min": accuracy,
            }
        return {
            "algorithm": algorithm,
            "topology": label,
            "peers": peers,
            "round": round_,
            **metrics,
            "train_loss": loss,
            "bytes_sent": sent,
            "elapsed_s": round(time.perf_counter() - start, 4),
        }

    yield row(0, None)
    for r in range(1, train.rounds + 1):
        active = None
        if config.dropout_prob > 0 and algorithm != "central":
            active = ~dropped(config.seed, r, ids, config.dropout_prob)
        training = torch.ones(len(parts), dtype=torch.bool, device=device) if active is None else active
        if fedavg is not None:
            training = training & fedavg.select()
        if gossip is not None:
            gossip.before_train(models)
        losses = []
        for batch_ in data.batches(r, train.local_steps, train.local_epochs, batch):
            losses.append(models.step(batch_, train.lr, train.momentum, training)[training])
        if gossip is not None and count_bytes is not None:
            sent += count_bytes(gossip.exchange(models, r, active), r)
        elif fedavg is not None:
            sent += fedavg.exchange(models, training) * task.model_bytes
        on_round()
        if r % config.eval_every == 0 or r == train.rounds:
            trained = torch.cat(losses)
            yield row(r, float(trained.mean()) if len(trained) else None)
