"""Pure averaging against exact references: W @ X, the lambda_2^2 decay, push-sum."""

import math

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

import topologies as t
from gossipfl.consensus import consensus_distance
from gossipfl.stacked import StackedModels
from sim.vectorized import _MatrixExchange, _PairwiseExchange


def stacked(peers: int, seed: int = 0) -> StackedModels:
    torch.manual_seed(seed)
    return StackedModels(nn.Linear(5, 3), peers, init="independent", seed=seed)


def test_one_sync_round_equals_w_times_x() -> None:
    graph = t.hospital_mesh(3, 4, 2, seed=1)
    w = t.metropolis_hastings(graph)
    models = stacked(12)
    before = models.flat.double().numpy().copy()
    _MatrixExchange(w, torch.device("cpu"), push_sum=False).exchange(models, None)
    np.testing.assert_allclose(models.flat.double().numpy(), w.toarray() @ before, atol=1e-6)


@pytest.mark.parametrize(
    "graph", [t.ring(16), t.hospital_mesh(4, 4, 2), t.torus(4, 4)], ids=["ring", "hospital", "torus"]
)
def test_consensus_decays_by_lambda2_squared_and_mean_is_preserved(graph) -> None:
    lam = t.second_eigenvalue_modulus(t.metropolis_hastings(graph))
    models = stacked(graph.number_of_nodes())
    mean0 = models.flat.mean(dim=0).clone()
    exchange = _MatrixExchange(t.metropolis_hastings(graph), torch.device("cpu"), push_sum=False)
    # Measure over the second half of the rounds it takes to shrink 1e8-fold, well above
    # float32's floor, once the slowest mode dominates.
    end = min(80, int(math.log(1e-8) / (2 * math.log(lam))))
    distances = [consensus_distance(models.flat)]
    for _ in range(end):
        exchange.exchange(models, None)
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
    exchange = _MatrixExchange(t.push_sum(graph), torch.device("cpu"), push_sum=True)
    for _ in range(rounds):
        exchange.before_train(models, torch.ones(n, dtype=torch.bool))
        exchange.exchange(models, None)
    torch.testing.assert_close(models.flat, target.expand_as(models.flat), atol=1e-4, rtol=0)


def test_dropout_keeps_the_matrix_doubly_stochastic() -> None:
    graph = t.random(20, 0.3, seed=2)
    exchange = _MatrixExchange(t.metropolis_hastings(graph), torch.device("cpu"), push_sum=False)
    active = torch.rand(20, generator=torch.Generator().manual_seed(0)) > 0.4
    mix, messages = exchange._matrix(active)
    dense = mix(torch.eye(20))
    torch.testing.assert_close(dense.sum(0), torch.ones(20))
    torch.testing.assert_close(dense.sum(1), torch.ones(20))
    dropped = (~active).nonzero().flatten()
    for i in dropped:  # a dropped peer keeps exactly its own model
        assert dense[i, i] == pytest.approx(1.0)
    kept_edges = sum(1 for u, v in graph.edges if active[int(u[1:])] and active[int(v[1:])])
    assert messages == 2 * kept_edges


def test_pairwise_gossip_averages_disjoint_pairs_and_keeps_the_mean() -> None:
    graph = t.ring(10)
    models = stacked(10, seed=7)
    mean0 = models.flat.mean(dim=0).clone()
    exchange = _PairwiseExchange(graph, torch.device("cpu"), torch.Generator().manual_seed(1))
    before = models.flat.clone()
    sent = exchange.exchange(models, None)
    changed = (models.flat != before).any(dim=1).nonzero().flatten().tolist()
    assert sent == len(changed) > 0  # each moved peer took part in exactly one exchange
    torch.testing.assert_close(models.flat.mean(dim=0), mean0, atol=1e-6, rtol=0)
