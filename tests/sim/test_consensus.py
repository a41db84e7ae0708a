"""Pure averaging against exact references: W @ X, the lambda_2^2 decay, push-sum."""

import math

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

import topologies as t
from gossipfl.algorithms import get_algorithm
from gossipfl.learning.consensus import consensus_distance
from gossipfl.learning.stacked import StackedModels
from gossipfl.outgoing import Identity
from gossipfl.rules import WeightedMean
from gossipfl.schedule import matching
from sim.vectorized import GossipExchange


def exchange_on(graph: nx.Graph, algorithm: str = "dpsgd", **options) -> GossipExchange:  # type: ignore[no-untyped-def]
    return GossipExchange(
        get_algorithm(algorithm), graph, rule=WeightedMean(), transform=Identity(), **options
    )


def dense(exchange: GossipExchange, round_: int = 1, active: torch.Tensor | None = None) -> np.ndarray:
    """The round's mixing matrix W_r, read off by mixing the identity."""
    return exchange.round_for(round_, active).product(torch.eye(exchange.n).double()).numpy()


def stacked(peers: int, seed: int = 0) -> StackedModels:
    torch.manual_seed(seed)
    return StackedModels(nn.Linear(5, 3), peers, init="independent", seed=seed)


def test_one_sync_round_equals_w_times_x() -> None:
    graph = t.hospital_mesh(3, 4, 2, seed=1)
    w = t.metropolis_hastings(graph)
    models = stacked(12)
    before = models.flat.double().numpy().copy()
    exchange_on(graph).exchange(models, 1, None)
    np.testing.assert_allclose(models.flat.double().numpy(), w.toarray() @ before, atol=1e-6)


@pytest.mark.parametrize(
    "graph", [t.ring(16), t.hospital_mesh(4, 4, 2), t.torus(4, 4)], ids=["ring", "hospital", "torus"]
)
def test_consensus_decays_by_lambda2_squared_and_mean_is_preserved(graph) -> None:
    lam = t.second_eigenvalue_modulus(t.metropolis_hastings(graph))
    models = stacked(graph.number_of_nodes())
    mean0 = models.flat.mean(dim=0).clone()
    exchange = exchange_on(graph)
    # Measure over the second half of the rounds it takes to shrink 1e8-fold, well above
    # float32's floor, once the slowest mode dominates.
    end = min(80, int(math.log(1e-8) / (2 * math.log(lam))))
    distances = [consensus_distance(models.flat)]
    for r in range(end):
        exchange.exchange(models, r + 1, None)
        distances.append(consensus_distance(models.flat))
    rate = (math.log(distances[end]) - math.log(distances[end // 2])) / (end - end // 2)
    assert rate == pytest.approx(2 * math.log(lam), rel=0.05)
    torch.testing.assert_close(models.flat.mean(dim=0), mean0, atol=1e-6, rtol=0)


def test_simulator_pure_averaging_matches_theory_end_to_end(simulate) -> None:  # type: ignore[no-untyped-def]
    rows = simulate("ring", 16, lr=0.0, init="independent", rounds=60, eval_every=1)
    cd = [r["consensus_distance"] for r in rows]
    lam = 1 / 3 + 2 / 3 * math.cos(2 * math.pi / 16)  # MH on a ring is the uniform ring
    rate = (math.log(cd[60]) - math.log(cd[30])) / 30
    assert rate == pytest.approx(2 * math.log(lam), rel=0.05)
    assert cd[60] < cd[0] * 1e-2


def irregular_digraph() -> nx.DiGraph:
    # Out-degrees differ, so plain averaging would be biased; push-sum weights undo it.
    graph = t.directed_ring(6)
    graph.add_edges_from([("p0", "p2"), ("p0", "p3"), ("p1", "p4")])
    return graph


@pytest.mark.parametrize(
    ("graph", "rounds"), [(t.directed_ring(9), 300), (irregular_digraph(), 400)], ids=["ring", "irregular"]
)
def test_push_sum_on_digraphs_reaches_the_true_average(graph: nx.DiGraph, rounds: int) -> None:
    n = graph.number_of_nodes()
    models = stacked(n, seed=3)
    target = models.flat.mean(dim=0).clone()
    exchange = exchange_on(graph, "pushsum")
    for r in range(rounds):
        exchange.before_train(models)
        exchange.exchange(models, r + 1, None)
    torch.testing.assert_close(models.flat, target.expand_as(models.flat), atol=1e-4, rtol=0)


def test_dropout_keeps_the_matrix_doubly_stochastic() -> None:
    graph = t.random(20, 0.3, seed=2)
    exchange = exchange_on(graph)
    active = torch.rand(20, generator=torch.Generator().manual_seed(0)) > 0.4
    w = dense(exchange, 1, active)
    np.testing.assert_allclose(w.sum(0), np.ones(20), atol=1e-6)
    np.testing.assert_allclose(w.sum(1), np.ones(20), atol=1e-6)
    for i in (~active).nonzero().flatten():  # a dropped peer keeps exactly its own model
        assert w[i, i] == pytest.approx(1.0)
    kept_edges = sum(1 for u, v in graph.edges if active[int(u[1:])] and active[int(v[1:])])
    assert len(exchange.round_for(1, active).src) == 2 * kept_edges


@pytest.mark.parametrize(
    ("graph", "options", "reference"),
    [
        (t.hospital_mesh(3, 4, 2, seed=1), {}, lambda g: t.metropolis_hastings(g)),
        (t.hospital_mesh(3, 4, 2, seed=1), {"lazy": True}, lambda g: t.lazy(t.metropolis_hastings(g))),
        (t.ring(9), {"mixing": "uniform"}, lambda g: t.uniform(g)),
        (irregular_digraph(), {"algorithm": "pushsum"}, lambda g: t.push_sum(g)),
        (irregular_digraph(), {"algorithm": "pushsum", "lazy": True}, lambda g: t.lazy(t.push_sum(g))),
    ],
    ids=["metropolis", "lazy", "uniform", "pushsum", "lazy-pushsum"],
)
def test_the_engines_round_matrix_is_the_topology_librarys(graph, options, reference) -> None:  # type: ignore[no-untyped-def]
    # The engine derives W from the algorithm's per-peer weight function (what a real peer
    # computes); topologies builds it independently from the graph.
    np.testing.assert_allclose(dense(exchange_on(graph, **options)), reference(graph).toarray(), atol=1e-7)


@pytest.mark.parametrize("algorithm", ["dpsgd", "pushsum", "gossip"])
@pytest.mark.parametrize("dropout", [False, True])
def test_the_generic_path_equals_the_sparse_fast_path(algorithm: str, dropout: bool) -> None:
    graph = t.hospital_mesh(3, 4, 2, seed=4)
    active = torch.rand(12, generator=torch.Generator().manual_seed(3)) > 0.3 if dropout else None
    runs = []
    for generic in (False, True):
        models = stacked(12, seed=5)
        exchange = exchange_on(graph, algorithm, generic=generic, seed=9)
        for r in range(1, 6):
            exchange.before_train(models)
            models.flat.add_(0.01 * r)  # stands in for a local step
            exchange.exchange(models, r, active)
        runs.append(models.flat.clone())
    torch.testing.assert_close(runs[1], runs[0], atol=1e-6, rtol=1e-6)


def test_pairwise_gossip_averages_disjoint_pairs_and_keeps_the_mean() -> None:
    graph = t.ring(10)
    models = stacked(10, seed=7)
    mean0 = models.flat.mean(dim=0).clone()
    exchange = exchange_on(graph, "gossip", seed=1)
    before = models.flat.clone()
    links = exchange.exchange(models, 1, None)
    changed = (models.flat != before).any(dim=1).nonzero().flatten().tolist()
    assert len(links.src) == len(changed) > 0  # each moved peer took part in exactly one exchange
    for a, b in zip(links.src.tolist(), links.dst.tolist(), strict=True):
        torch.testing.assert_close(models.flat[a], (before[a] + before[b]) / 2)
    torch.testing.assert_close(models.flat.mean(dim=0), mean0, atol=1e-6, rtol=0)


def test_matching_never_puts_a_node_in_two_pairs_even_when_priorities_tie(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Regression: float32 priorities tied on a 10,000-node ring (4 of 30,000 ticks put one
    # node in two pairs and changed the sum). Force every priority to tie: ranks stay distinct.
    import gossipfl.schedule as schedule

    monkeypatch.setattr(schedule, "uniform", lambda seed, stream, ids, count: torch.zeros(len(ids), count))
    graph = t.ring(1000)
    u = torch.tensor([int(a[1:]) for a, _ in graph.edges])
    v = torch.tensor([int(b[1:]) for _, b in graph.edges])
    partner = matching(u, v, 1000, seed=0, round_=1)
    paired = partner >= 0
    assert int(paired.sum()) > 0
    assert bool((partner[partner[paired]] == paired.nonzero().flatten()).all())
    x = torch.randn(1000, dtype=torch.float64)
    mixed = torch.where(paired, (x + x[partner.clamp_min(0)]) / 2, x)
    assert float(mixed.sum()) == pytest.approx(float(x.sum()))


def test_fedavg_weighs_clients_by_their_sample_counts() -> None:
    from sim.vectorized import _FedAvgExchange

    models = stacked(4, seed=11)
    before = models.flat.double().numpy().copy()
    sizes = torch.tensor([10, 30, 5, 55])
    exchange = _FedAvgExchange(sizes, 1.0, torch.Generator().manual_seed(0))
    exchange.select()
    assert exchange.exchange(models, torch.ones(4, dtype=torch.bool)) == 8
    expected = (sizes.double().numpy()[:, None] * before).sum(axis=0) / 100
    for row in models.flat.double().numpy():
        np.testing.assert_allclose(row, expected, atol=1e-6)
