import numpy as np
import pytest

import topologies as t


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
        assert w[i, j] == pytest.approx(t.metropolis_hastings_weight(graph.degree[u], graph.degree[v]))


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
