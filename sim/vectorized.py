"""The vectorized engine: every algorithm as (batched local SGD) + (one tensor-level exchange).

Each algorithm differs only in its exchange, a small class with ``before_train`` and
``exchange``; the round loop, sampling, evaluation and accounting are shared, so the
algorithms are compared on exactly the same data stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch

from gossipfl.averaging import weighted_sum
from gossipfl.stacked import PeerData, StackedModels
from sim.config import SimConfig
from sim.task import Task

__all__ = ["run_vectorized"]

Row = dict[str, Any]


def _torch_sparse(matrix: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    coo = matrix.tocoo()
    rows = torch.from_numpy(coo.row.astype(np.int64)).to(device)
    cols = torch.from_numpy(coo.col.astype(np.int64)).to(device)
    vals = torch.from_numpy(coo.data.astype(np.float32)).to(device)
    return rows, cols, vals


# Stacks above this many floats are mixed in place, a block of columns at a time.
_IN_PLACE_FLOATS = 1 << 26


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


class _MatrixExchange:
    """``X <- W X`` for D-PSGD (row-stochastic W) and push-sum (column-stochastic P).

    A dropped peer neither sends nor receives: its links' weight goes back to the diagonal,
    per row for D-PSGD and per column (the sender's share) for push-sum, which keeps W
    doubly stochastic and P column-stochastic.
    """

    def __init__(self, matrix: Any, device: torch.device, *, push_sum: bool) -> None:
        self.rows, self.cols, self.vals = _torch_sparse(matrix, device)
        self.n = matrix.shape[0]
        self.push_sum = push_sum
        self.diagonal = self.rows == self.cols
        self.full = self._csr(self.vals)
        self.messages = int((~self.diagonal).sum())
        self.weights = torch.ones(self.n, 1, device=device) if push_sum else None
        self.numerators: torch.Tensor | None = None
        self.before: torch.Tensor | None = None

    def _csr(self, vals: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``X -> W X`` for the matrix with these entries."""
        if vals.device.type == "cpu":
            # scipy's CSR product is single-threaded C++ and still over twice as fast as
            # torch's sparse kernels on CPU; .numpy() shares memory, so nothing is copied.
            matrix = sp.csr_matrix(
                (vals.numpy(), (self.rows.numpy(), self.cols.numpy())), shape=(self.n, self.n)
            )
            return lambda x: _mix_columns(matrix, x)
        index = torch.stack([self.rows, self.cols])
        # COO rather than CSR: CSR tensors are still marked beta and warn on every build.
        coo = torch.sparse_coo_tensor(index, vals, (self.n, self.n), check_invariants=False)
        coalesced = coo.coalesce()
        return lambda x: coalesced @ x

    def _matrix(self, active: torch.Tensor | None) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
        if active is None:
            return self.full, self.messages
        keep = self.diagonal | (active[self.rows] & active[self.cols])
        owner = self.cols if self.push_sum else self.rows
        lost = torch.zeros(self.n, device=self.vals.device).index_add_(
            0, owner, torch.where(keep, 0.0, self.vals)
        )
        vals = torch.where(keep, self.vals, 0.0) + torch.where(self.diagonal, lost[owner], 0.0)
        return self._csr(vals), int((keep & ~self.diagonal).sum())

    def before_train(self, models: StackedModels, active: torch.Tensor) -> torch.Tensor:
        if self.push_sum:
            if self.numerators is None:
                self.numerators = models.flat.clone()
            self.before = models.flat.clone()
        return active

    def exchange(self, models: StackedModels, active: torch.Tensor | None) -> int:
        mix, messages = self._matrix(active)
        if not self.push_sum:
            models.replace(mix(models.flat))
            return messages
        assert self.numerators is not None and self.before is not None and self.weights is not None
        # Push-sum SGD: the local step moves the numerator x by what it moved z = x / w.
        self.numerators += models.flat - self.before
        self.numerators = mix(self.numerators)
        self.weights = mix(self.weights)
        models.replace(self.numerators / self.weights)
        return messages

    def average(self, models: StackedModels) -> torch.Tensor:
        if self.push_sum and self.numerators is not None:
            assert self.weights is not None
            return self.numerators.sum(dim=0) / self.weights.sum()
        return models.flat.mean(dim=0)


class _PairwiseExchange:
    """Asynchronous gossip learning, one tick at a time: a random set of disjoint edges
    (a matching) averages pairwise. Each edge is chosen when its random priority is the
    smallest among all edges touching either endpoint, which makes the set disjoint."""

    def __init__(self, graph: nx.Graph, device: torch.device, gen: torch.Generator) -> None:
        index = {v: i for i, v in enumerate(graph.nodes)}
        pairs = np.array([(index[a], index[b]) for a, b in graph.edges], dtype=np.int64).reshape(-1, 2)
        self.u = torch.from_numpy(pairs[:, 0]).to(device)
        self.v = torch.from_numpy(pairs[:, 1]).to(device)
        self.n = len(index)
        self.gen = gen

    def before_train(self, models: StackedModels, active: torch.Tensor) -> torch.Tensor:
        return active

    def exchange(self, models: StackedModels, active: torch.Tensor | None) -> int:
        priority = torch.rand(len(self.u), generator=self.gen, device=self.u.device)
        if active is not None:
            priority[~(active[self.u] & active[self.v])] = float("inf")
        lowest = torch.full((self.n,), float("inf"), device=self.u.device)
        lowest = lowest.scatter_reduce(0, self.u, priority, "amin")
        lowest = lowest.scatter_reduce(0, self.v, priority, "amin")
        chosen = (priority == lowest[self.u]) & (priority == lowest[self.v]) & priority.isfinite()
        a, b = self.u[chosen], self.v[chosen]
        mean = (models.flat[a] + models.flat[b]) * 0.5
        models.flat[a] = mean
        models.flat[b] = mean
        return 2 * len(a)  # push-pull: one model each way

    def average(self, models: StackedModels) -> torch.Tensor:
        return models.flat.mean(dim=0)


class _FedAvgExchange:
    """FedAvg: a server sends the global model to a sampled fraction of clients and
    replaces it by their sample-weighted average after local training."""

    def __init__(self, sizes: torch.Tensor, fraction: float, gen: torch.Generator) -> None:
        self.sizes = sizes.float()
        self.count = max(1, round(fraction * len(sizes)))
        self.gen = gen
        self.selected = torch.ones(len(sizes), dtype=torch.bool, device=sizes.device)

    def before_train(self, models: StackedModels, active: torch.Tensor) -> torch.Tensor:
        n = len(self.sizes)
        if self.count < n:
            pick = torch.randperm(n, generator=self.gen)[: self.count].to(self.sizes.device)
            self.selected = torch.zeros(n, dtype=torch.bool, device=self.sizes.device)
            self.selected[pick] = True
        return active & self.selected

    def exchange(self, models: StackedModels, active: torch.Tensor | None) -> int:
        reporting = self.selected if active is None else self.selected & active
        if not bool(reporting.any()):
            return 0
        weights = self.sizes[reporting] / self.sizes[reporting].sum()
        models.flat.copy_(weighted_sum(models.flat[reporting], weights).expand_as(models.flat))
        return 2 * int(reporting.sum())  # each reporting client downloads and uploads once

    def average(self, models: StackedModels) -> torch.Tensor:
        return models.flat[0]


class _NoExchange:
    """The centralized baseline: one model, nothing to exchange."""

    def before_train(self, models: StackedModels, active: torch.Tensor) -> torch.Tensor:
        return active

    def exchange(self, models: StackedModels, active: torch.Tensor | None) -> int:
        return 0

    def average(self, models: StackedModels) -> torch.Tensor:
        return models.flat[0]


Exchange = _MatrixExchange | _PairwiseExchange | _FedAvgExchange | _NoExchange


def _exchange_for(
    algorithm: str, config: SimConfig, graph: nx.Graph | None, data: PeerData, gen: torch.Generator
) -> Exchange:
    device = data.index.device
    if algorithm == "central":
        return _NoExchange()
    if algorithm == "fedavg":
        return _FedAvgExchange(data.lengths, config.client_fraction, gen)
    assert graph is not None
    if algorithm == "gossip":
        return _PairwiseExchange(nx.Graph(graph), device, gen)
    if algorithm == "pushsum":
        return _MatrixExchange(config.mixing_for(graph, push_sum=True), device, push_sum=True)
    if graph.is_directed():
        raise ValueError("dpsgd needs an undirected topology; use --algorithm pushsum on directed graphs")
    return _MatrixExchange(config.mixing_for(graph, push_sum=False), device, push_sum=False)


def run_vectorized(
    config: SimConfig,
    task: Task,
    algorithm: str,
    topology: str,
    graph: nx.Graph | None,
    parts: list[np.ndarray],
    on_round: Callable[[], None] = lambda: None,
) -> Iterator[Row]:
    """Run one algorithm; yield a metrics row at round 0, every ``eval_every`` rounds and
    at the last round. ``on_round`` is called after every round (progress bars)."""
    train = config.train
    peers = len(parts)
    batch = train.batch_size
    if algorithm == "central":
        parts = [np.sort(np.concatenate(parts))]
        batch *= peers  # as many sample-gradients per step as all peers together
    device = task.device
    data = PeerData(parts, task.x_train, task.y_train, device, seed=config.seed)
    models = StackedModels(task.new_model(), len(parts), init=config.init, seed=config.seed, device=device)
    # Minibatches come from counter-based draws (identical across algorithms and engines);
    # scheduling draws (dropouts, client sampling, matchings) have their own generator.
    sched_gen = torch.Generator(device=device).manual_seed(config.seed + 2)
    exchange = _exchange_for(algorithm, config, graph, data, sched_gen)
    all_active = torch.ones(len(parts), dtype=torch.bool, device=device)
    label = {"central": "pooled", "fedavg": "server"}.get(algorithm, topology)
    sent = 0
    start = time.perf_counter()

    def row(round_: int, loss: float | None) -> Row:
        mean = exchange.average(models)
        if algorithm in ("dpsgd", "pushsum", "gossip"):
            metrics: dict[str, float | None] = {**models.evaluate(mean, task.x_test, task.y_test)}
        else:  # every client holds the one global model
            accuracy = models.accuracy(mean, task.x_test, task.y_test)
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
            "bytes_sent": sent * task.model_bytes,
            "elapsed_s": round(time.perf_counter() - start, 4),
        }

    yield row(0, None)
    for r in range(1, train.rounds + 1):
        active = all_active
        if config.dropout_prob > 0 and algorithm != "central":
            active = torch.rand(len(parts), generator=sched_gen, device=device) >= config.dropout_prob
        training = exchange.before_train(models, active)
        losses = []
        for batch_ in data.batches(r, train.local_steps, train.local_epochs, batch):
            losses.append(models.step(batch_, train.lr, train.momentum, training)[training])
        sent += exchange.exchange(models, None if active is all_active else active)
        on_round()
        if r % config.eval_every == 0 or r == train.rounds:
            trained = torch.cat(losses)
            yield row(r, float(trained.mean()) if len(trained) else None)
