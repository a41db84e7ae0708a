"""Mixing matrices as sparse CSR matrices, and the spectral gap that governs consensus.

Row and column ``i`` belong to ``list(graph.nodes)[i]``. Every builder here is vectorized over
the edge list, so a 10,000-node graph costs milliseconds.

- Metropolis–Hastings ``W_ij = 1/(1 + max(d_i, d_j))``: symmetric and doubly stochastic on any
  undirected graph, and computable by a peer from its own and its neighbours' degrees.
- Uniform ``1/(d+1)``: only on regular graphs. On an irregular graph its rows still sum to 1
  but its columns do not, so gossip converges to a degree-weighted average, not the mean.
- Push-sum: column-stochastic weights for directed graphs; each node splits its mass evenly
  over itself and its out-neighbours. Only strongly connected digraphs are accepted: elsewhere
  some peer's weight drains to 0 and its estimate numerator/weight turns into NaN.

Parallel edges of a multigraph count as one link (see ``topologies.graph_io``).
"""

from __future__ import annotations

from typing import Literal

import networkx as nx
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = [
    "MixingRule",
    "lazy",
    "metropolis_hastings",
    "mixing_matrix",
    "push_sum",
    "second_eigenvalue_modulus",
    "spectral_gap",
    "uniform",
]

MixingRule = Literal["auto", "metropolis", "uniform", "push-sum"]

# Above these sizes, eigenvalues come from ARPACK instead of a dense O(n^3) decomposition;
# the general (non-symmetric) dense solver is several times slower than the symmetric one.
_DENSE_LIMIT = 1500
_DENSE_LIMIT_NONSYMMETRIC = 400
# Restarts of plain Arnoldi before switching to shift-invert (about a second at 2,000 nodes),
# and how many eigenvalues next to 1 shift-invert computes.
_ARNOLDI_RESTARTS = 100
_NEAR_ONE = 6


def _edge_index(graph: nx.Graph) -> tuple[np.ndarray, np.ndarray, int]:
    index = {v: i for i, v in enumerate(graph.nodes)}
    # edges(keys=False) would still repeat a multigraph's parallel edges; a set of pairs does not.
    pairs = dict.fromkeys((u, v) for u, v, *_ in graph.edges if u != v)
    edges = np.array([(index[u], index[v]) for u, v in pairs], dtype=np.int64)
    edges = edges.reshape(-1, 2)
    return edges[:, 0], edges[:, 1], len(index)


def _with_diagonal(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> sp.csr_matrix:
    """Off-diagonal entries plus the diagonal that makes every row sum to 1."""
    off = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    diagonal = 1.0 - np.asarray(off.sum(axis=1)).ravel()
    return sp.csr_matrix(off + sp.diags(diagonal))


def _require_undirected(graph: nx.Graph, rule: str) -> None:
    if graph.is_directed():
        raise ValueError(f"{rule} weights need an undirected graph; use push-sum for directed ones")
    if graph.number_of_nodes() == 0:
        raise ValueError("the graph has no nodes")


def metropolis_hastings(graph: nx.Graph) -> sp.csr_matrix:
    """Symmetric, doubly stochastic Metropolis–Hastings weights."""
    _require_undirected(graph, "Metropolis–Hastings")
    u, v, n = _edge_index(graph)
    degree = np.bincount(np.concatenate([u, v]), minlength=n)
    w = 1.0 / (1.0 + np.maximum(degree[u], degree[v]))
    return _with_diagonal(np.concatenate([u, v]), np.concatenate([v, u]), np.tile(w, 2), n)


def uniform(graph: nx.Graph) -> sp.csr_matrix:
    """``1/(d+1)`` on self and every neighbour; refused on irregular graphs."""
    _require_undirected(graph, "uniform")
    degrees = {d for _, d in graph.degree}
    if len(degrees) != 1:
        raise ValueError(
            f"uniform weights need a regular graph (degrees here: {sorted(degrees)}); on an "
            "irregular graph they converge to a degree-weighted average: use metropolis"
        )
    u, v, n = _edge_index(graph)
    w = np.full(2 * len(u), 1.0 / (degrees.pop() + 1))
    return _with_diagonal(np.concatenate([u, v]), np.concatenate([v, u]), w, n)


def _require_strongly_connected(graph: nx.DiGraph) -> None:
    if graph.number_of_nodes() == 0:
        raise ValueError("the graph has no nodes")
    if nx.is_strongly_connected(graph):
        return
    components = list(nx.strongly_connected_components(graph))
    condensed = nx.condensation(graph, components)
    # Nothing outside a source component reaches into it: name one such pair as the example.
    source = next(c for c in condensed if condensed.in_degree(c) == 0)
    target = next(iter(components[source]))
    stranded = next(v for v in graph.nodes if v not in components[source])
    raise ValueError(
        f"push-sum needs a strongly connected digraph, this one has {len(components)} strongly "
        f"connected components ({stranded!r} cannot reach {target!r})"
    )


def push_sum(graph: nx.DiGraph) -> sp.csr_matrix:
    """Column-stochastic push-sum weights: ``P[j, i] = 1/(out_degree(i) + 1)`` for i -> j.

    Refuses digraphs that are not strongly connected (``ValueError``).
    """
    if not graph.is_directed():
        raise ValueError("push-sum weights are for directed graphs; use metropolis")
    _require_strongly_connected(graph)
    src, dst, n = _edge_index(graph)
    out_degree = np.bincount(src, minlength=n)
    share = 1.0 / (out_degree + 1.0)
    rows = np.concatenate([dst, np.arange(n)])
    cols = np.concatenate([src, np.arange(n)])
    return sp.csr_matrix((share[cols], (rows, cols)), shape=(n, n))


def lazy(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``(I + W) / 2``: keeps every eigenvalue in [0, 1], so bipartite graphs still converge."""
    n = matrix.shape[0]
    return sp.csr_matrix((sp.identity(n, format="csr") + matrix) * 0.5)


def mixing_matrix(graph: nx.Graph, rule: MixingRule = "auto", *, make_lazy: bool = False) -> sp.csr_matrix:
    """The mixing matrix of ``graph`` under ``rule``; ``auto`` picks push-sum for digraphs."""
    if rule == "auto":
        rule = "push-sum" if graph.is_directed() else "metropolis"
    if rule == "metropolis":
        matrix = metropolis_hastings(graph)
    elif rule == "uniform":
        matrix = uniform(graph)
    elif rule == "push-sum":
        matrix = push_sum(graph)
    else:
        raise ValueError(f"unknown mixing rule {rule!r}")
    return lazy(matrix) if make_lazy else matrix


def _is_symmetric(matrix: sp.csr_matrix) -> bool:
    diff = matrix - matrix.T
    return bool(diff.nnz == 0 or abs(diff).max() < 1e-12)


def second_eigenvalue_modulus(matrix: sp.csr_matrix) -> float:
    """Second-largest eigenvalue modulus of a stochastic matrix (the largest is 1)."""
    w = sp.csr_matrix(matrix).astype(np.float64)
    n = w.shape[0]
    if n == 1:
        return 0.0
    symmetric = _is_symmetric(w)
    if n <= (_DENSE_LIMIT if symmetric else _DENSE_LIMIT_NONSYMMETRIC):
        dense = w.toarray()
        values = np.linalg.eigvalsh(dense) if symmetric else np.linalg.eigvals(dense)
        moduli = np.sort(np.abs(values))[::-1]
        return float(min(moduli[1], 1.0))
    if symmetric:
        return _symmetric_second_modulus(w)
    return _general_second_modulus(w)


def _beside_one(values: np.ndarray) -> float:
    """Largest modulus among ``values`` once the one closest to the eigenvalue 1 is set aside."""
    rest = np.delete(values, np.argmin(np.abs(values - 1.0)))
    return float(min(np.abs(rest).max(), 1.0))


def _general_second_modulus(w: sp.csr_matrix) -> float:
    """|lambda_2| of a non-symmetric stochastic matrix (push-sum), sparse.

    Arnoldi for the largest moduli converges in a few restarts on well-mixing graphs but
    stalls where many eigenvalues share almost the same modulus (a 2,000-node directed ring:
    cos(pi k / n) for small k). Those slow-mixing eigenvalues sit next to 1: every Gershgorin
    disc of a stochastic matrix with a positive diagonal (self-weights, as push-sum gives) is
    internally tangent to the unit circle at 1, so a modulus near 1 forces a value near 1.
    Shift-invert just above 1 finds exactly those in a few steps.
    """
    n = w.shape[0]
    try:
        values = spla.eigs(
            w,
            k=3,
            which="LM",
            ncv=min(n - 1, 40),
            maxiter=_ARNOLDI_RESTARTS,
            tol=1e-10,
            return_eigenvectors=False,
        )
        return _beside_one(values)
    except spla.ArpackNoConvergence:
        pass
    values = spla.eigs(sp.csc_matrix(w), k=_NEAR_ONE, sigma=1.0 + 1e-6, which="LM", return_eigenvectors=False)
    return _beside_one(values)


def _fiedler_value(laplacian: sp.csc_matrix) -> float:
    """Second-smallest eigenvalue of the Laplacian-like ``I - W``.

    Plain Lanczos converges in milliseconds on well-connected graphs but stalls where the
    spectrum clusters near 0 (a 10,000-ring); shift-invert just below 0 then converges in a
    few steps, and its factorization is cheap exactly on such sparse, poorly-mixing graphs.
    """
    try:
        values = spla.eigsh(
            laplacian, k=2, which="SA", return_eigenvectors=False, maxiter=100, ncv=20, tol=1e-10
        )
    except spla.ArpackNoConvergence:
        values = spla.eigsh(laplacian, k=2, sigma=-1e-3, which="LM", return_eigenvectors=False)
    return float(np.sort(values)[1])


def _largest_eigenvalue(laplacian: sp.csc_matrix) -> float:
    # Lanczos Ritz values approach the top eigenvalue from below and settle long before the
    # eigenvector does, so a loose residual tolerance still gives ~1e-6 accuracy quickly.
    values = spla.eigsh(laplacian, k=1, which="LA", return_eigenvectors=False, maxiter=5000, ncv=40, tol=1e-6)
    return float(values[0])


def _symmetric_second_modulus(w: sp.csr_matrix) -> float:
    # With L = I - W, lambda_2(W) = 1 - (second-smallest eigenvalue of L) and the most negative
    # eigenvalue of W is 1 - (largest eigenvalue of L); |lambda_2| is the larger modulus.
    laplacian = sp.csc_matrix(sp.identity(w.shape[0]) - w)
    fiedler = _fiedler_value(laplacian)
    top = _largest_eigenvalue(laplacian)
    return float(min(max(abs(1.0 - fiedler), abs(1.0 - top)), 1.0))


def spectral_gap(matrix: sp.csr_matrix) -> float:
    """``1 - |lambda_2|``: the per-round rate at which gossip shrinks disagreement."""
    return 1.0 - second_eigenvalue_modulus(matrix)
