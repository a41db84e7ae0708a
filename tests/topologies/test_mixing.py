import networkx as nx
import numpy as np
import pytest

import topologies as t
from topologies import mixing


def dense(w) -> np.ndarray:
    return np.asarray(w.toarray())


@pytest.mark.parametrize(
    "graph",
    [t.ring(7), t.star(9), t.hospital_mesh(4, 3, 2), t.random(30, 0.2, seed=1), t.exponential(12)],
    ids=["ring", "star", "hospital", "random", "exponential"],
)
def test_metropolis_hastings_is_symmetric_and_doubly_stochastic(graph) -> None:
    w = dense(t.metropolis_hastings(graph))
    np.testing.assert_allclose(w, w.T, atol=1e-15)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-12)
    assert (w >= 0).all()
    nodes = list(graph.nodes)
    for u, v in graph.edges:
        i, j = nodes.index(u), nodes.index(v)
        assert w[i, j] == pytest.approx(1 / (1 + max(graph.degree[u], graph.degree[v])))


@pytest.mark.parametrize("n", [5, 8, 13])
def test_uniform_ring_eigenvalues_closed_form(n: int) -> None:
    w = dense(t.uniform(t.ring(n)))
    expected = np.sort(1 / 3 + 2 / 3 * np.cos(2 * np.pi * np.arange(n) / n))
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(w)), expected, atol=1e-12)


def test_complete_graph_gap_is_one() -> None:
    assert t.spectral_gap(t.uniform(t.complete(10))) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("k", [3, 4, 6])
def test_torus_lambda2_closed_form(k: int) -> None:
    w = t.uniform(t.torus(k, k))
    assert dense(w)[0, 0] == pytest.approx(1 / 5)
    lam2 = np.sort(np.linalg.eigvalsh(dense(w)))[-2]
    assert lam2 == pytest.approx(3 / 5 + 2 / 5 * np.cos(2 * np.pi / k), abs=1e-12)


@pytest.mark.parametrize("n", [4, 10, 25])
def test_metropolis_star_lambda2(n: int) -> None:
    w = t.metropolis_hastings(t.star(n))
    assert t.second_eigenvalue_modulus(w) == pytest.approx(1 - 1 / n, abs=1e-12)


def test_uniform_refused_on_irregular_graph() -> None:
    with pytest.raises(ValueError, match="regular graph"):
        t.uniform(t.star(5))


def test_push_sum_is_column_stochastic() -> None:
    p = dense(t.push_sum(t.directed_ring(5)))
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    assert p[1, 0] == pytest.approx(0.5)
    assert p[0, 0] == pytest.approx(0.5)
    # eigenvalues (1 + w^k)/2 have modulus |cos(pi k / n)|
    assert t.second_eigenvalue_modulus(t.push_sum(t.directed_ring(5))) == pytest.approx(
        abs(np.cos(np.pi / 5)), abs=1e-12
    )


def test_lazy_variant_halves_toward_identity() -> None:
    w = t.uniform(t.ring(6))  # bipartite: eigenvalue -1/3, lazy maps it to 1/3
    lazy = dense(t.lazy(w))
    np.testing.assert_allclose(lazy, (np.eye(6) + dense(w)) / 2)
    assert (np.linalg.eigvalsh(lazy) >= -1e-12).all()


def test_sparse_eigensolver_agrees_with_closed_form_at_scale() -> None:
    n = 3000  # above the dense limit: exercises the sparse path
    w = t.uniform(t.ring(n))
    assert t.second_eigenvalue_modulus(w) == pytest.approx(1 / 3 + 2 / 3 * np.cos(2 * np.pi / n), abs=1e-9)
    star = t.metropolis_hastings(t.star(n))
    assert t.second_eigenvalue_modulus(star) == pytest.approx(1 - 1 / n, abs=1e-9)


def test_mixing_matrix_of_10000_nodes_is_sparse() -> None:
    w = t.mixing_matrix(t.ring(10_000))
    assert w.nnz == 30_000


def test_directed_ring_of_2000_push_sum_gap_closed_form() -> None:
    # P = (I + shift)/2 is circulant: eigenvalues (1 + w^k)/2, moduli |cos(pi k / n)|.
    # Plain Arnoldi stalls on these near-equal moduli (the old ArpackNoConvergence).
    n = 2000
    gap = t.spectral_gap(t.push_sum(t.directed_ring(n)))
    assert gap == pytest.approx(1 - np.cos(np.pi / n), rel=1e-6)


def _ring_moduli(n: int, make_lazy: bool) -> float:
    # (I + P)/2 of the circulant P has eigenvalues (3 + w^k)/4
    w = np.exp(2j * np.pi / n)
    return float(abs(3 + w) / 4 if make_lazy else abs(1 + w) / 2)


@pytest.mark.parametrize(
    ("graph", "make_lazy"),
    [
        (t.directed_ring(300), False),  # slow mixing: the shift-invert branch
        (t.directed_ring(300), True),
        (nx.gnp_random_graph(200, 0.05, seed=4, directed=True), False),  # fast: plain Arnoldi
    ],
    ids=["ring", "lazy-ring", "random"],
)
def test_sparse_push_sum_eigensolver_matches_reference(
    monkeypatch: pytest.MonkeyPatch, graph: nx.DiGraph, make_lazy: bool
) -> None:
    graph = graph.subgraph(max(nx.strongly_connected_components(graph), key=len)).copy()
    p = t.mixing_matrix(graph, "push-sum", make_lazy=make_lazy)
    n = graph.number_of_nodes()
    if nx.is_isomorphic(graph, t.directed_ring(n)):
        expected = _ring_moduli(n, make_lazy)
    else:
        expected = float(np.sort(np.abs(np.linalg.eigvals(dense(p))))[-2])
    monkeypatch.setattr(mixing, "_DENSE_LIMIT_NONSYMMETRIC", 10)  # force the sparse path
    assert t.second_eigenvalue_modulus(p) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "edges",
    [
        [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")],  # directed path of 5
        [("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")],  # two separate 2-cycles
    ],
    ids=["path", "two-cycles"],
)
def test_push_sum_refuses_digraphs_that_are_not_strongly_connected(edges: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="push-sum needs a strongly connected digraph") as info:
        t.push_sum(nx.DiGraph(edges))
    assert "cannot reach" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="strongly connected"):
        t.summarize(nx.DiGraph(edges))


def test_parallel_edges_count_once_in_every_matrix() -> None:
    simple = t.hospital_mesh(3, 3, 2)
    multi = nx.MultiGraph(simple)
    multi.add_edges_from(list(simple.edges)[:5])  # a second copy of five links
    for rule in ("metropolis", "push-sum"):
        g, m = (simple, multi) if rule == "metropolis" else (simple.to_directed(), multi.to_directed())
        np.testing.assert_array_equal(dense(t.mixing_matrix(m, rule)), dense(t.mixing_matrix(g, rule)))
    assert t.summarize(multi) == t.summarize(simple)
