"""Graph builders: plain functions returning a fresh networkx graph with string node ids.

Every builder validates its parameters and raises ``ValueError`` with a one-line reason
for impossible requests. Randomness comes only from the ``seed`` argument; no global RNG
is touched, so the same seed always yields the same graph.
"""

from __future__ import annotations

import itertools
import math
import random as _random

import networkx as nx

__all__ = [
    "complete",
    "directed_ring",
    "exponential",
    "hospital_id",
    "hospital_mesh",
    "node_ids",
    "random",
    "random_regular",
    "ring",
    "small_world",
    "star",
    "torus",
    "torus_for",
]

# Resampling Erdős–Rényi or Watts–Strogatz graphs until connected almost always succeeds in a
# handful of draws when p is above the connectivity threshold; past this many, p is too small.
_MAX_RESAMPLES = 200


def node_ids(n: int) -> list[str]:
    """The default peer ids ``p0 .. p{n-1}``."""
    return [f"p{i}" for i in range(n)]


def _relabel(g: nx.Graph) -> nx.Graph:
    mapping = {v: f"p{v}" for v in g.nodes}
    out: nx.Graph = nx.relabel_nodes(g, mapping, copy=True)
    return out


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def ring(n: int) -> nx.Graph:
    """Undirected cycle p0 - p1 - ... - p{n-1} - p0."""
    _need(n >= 3, f"a ring needs at least 3 peers, got {n}")
    return _relabel(nx.cycle_graph(n))


def directed_ring(n: int) -> nx.DiGraph:
    """Directed cycle p_i -> p_{i+1}: the simplest graph that needs push-sum."""
    _need(n >= 2, f"a directed ring needs at least 2 peers, got {n}")
    g = nx.DiGraph()
    ids = node_ids(n)
    g.add_nodes_from(ids)
    g.add_edges_from((ids[i], ids[(i + 1) % n]) for i in range(n))
    return g


def torus(rows: int, cols: int | None = None) -> nx.Graph:
    """2-D torus (wrap-around grid); every node has degree 4 when both sides are >= 3."""
    cols = rows if cols is None else cols
    _need(rows >= 3 and cols >= 3, f"a torus needs both sides >= 3, got {rows}x{cols}")
    grid = nx.grid_2d_graph(rows, cols, periodic=True)
    mapping = {(r, c): f"p{r * cols + c}" for r, c in grid.nodes}
    out: nx.Graph = nx.relabel_nodes(grid, mapping, copy=True)
    return out


def torus_for(n: int) -> nx.Graph:
    """The squarest torus with exactly ``n`` nodes."""
    rows = math.isqrt(n)
    while rows >= 3 and n % rows:
        rows -= 1
    _need(rows >= 3 and n // rows >= 3, f"{n} peers do not form a torus with both sides >= 3")
    return torus(rows, n // rows)


def complete(n: int) -> nx.Graph:
    """Every peer linked to every other peer."""
    _need(n >= 2, f"a complete graph needs at least 2 peers, got {n}")
    return _relabel(nx.complete_graph(n))


def star(n: int) -> nx.Graph:
    """Hub p0 linked to every other peer: a server in disguise, kept for comparison."""
    _need(n >= 2, f"a star needs at least 2 peers, got {n}")
    return _relabel(nx.star_graph(n - 1))


def random(n: int, p: float | None = None, seed: int = 0) -> nx.Graph:
    """Erdős–Rényi G(n, p), resampled with successive seeds until connected.

    The default ``p`` is twice the connectivity threshold ln(n)/n, capped at 1.
    """
    _need(n >= 2, f"a random graph needs at least 2 peers, got {n}")
    if p is None:
        p = min(1.0, 2.0 * math.log(n) / n)
    _need(0.0 < p <= 1.0, f"edge probability must be in (0, 1], got {p}")
    rng = _random.Random(seed)
    for _ in range(_MAX_RESAMPLES):
        g = nx.fast_gnp_random_graph(n, p, seed=rng.randrange(2**32))
        if nx.is_connected(g):
            return _relabel(g)
    raise ValueError(f"no connected G(n={n}, p={p}) in {_MAX_RESAMPLES} draws; raise p above ln(n)/n")


def random_regular(n: int, degree: int, seed: int = 0) -> nx.Graph:
    """Uniformly random connected d-regular graph."""
    _need(n >= 3, f"a random regular graph needs at least 3 peers, got {n}")
    _need(2 <= degree < n, f"degree must be in [2, n-1], got {degree} for n={n}")
    _need((n * degree) % 2 == 0, f"n*degree must be even, got n={n}, degree={degree}")
    rng = _random.Random(seed)
    for _ in range(_MAX_RESAMPLES):
        g = nx.random_regular_graph(degree, n, seed=rng.randrange(2**32))
        if nx.is_connected(g):
            return _relabel(g)
    raise ValueError(f"no connected {degree}-regular graph on {n} nodes in {_MAX_RESAMPLES} draws")


def small_world(n: int, k: int = 4, p: float = 0.1, seed: int = 0) -> nx.Graph:
    """Connected Watts–Strogatz graph: ring lattice of k nearest neighbours, rewired with p."""
    _need(n >= 3, f"a small-world graph needs at least 3 peers, got {n}")
    _need(2 <= k < n and k % 2 == 0, f"k must be even and in [2, n-1], got {k} for n={n}")
    _need(0.0 <= p <= 1.0, f"rewiring probability must be in [0, 1], got {p}")
    g = nx.connected_watts_strogatz_graph(n, k, p, tries=_MAX_RESAMPLES, seed=seed)
    return _relabel(g)


def exponential(n: int) -> nx.Graph:
    """Node i linked to i + 2^k (mod n) for every 2^k < n: degree O(log n), diameter O(log n)."""
    _need(n >= 3, f"an exponential graph needs at least 3 peers, got {n}")
    g = nx.Graph()
    ids = node_ids(n)
    g.add_nodes_from(ids)
    hop = 1
    while hop < n:
        g.add_edges_from((ids[i], ids[(i + hop) % n]) for i in range(n))
        hop *= 2
    return g


def hospital_id(node: str) -> int | None:
    """The hospital index encoded in a hospital-mesh node id ``h{H}-n{K}``, else None."""
    head, sep, tail = node.partition("-n")
    if sep and head.startswith("h") and head[1:].isdigit() and tail.isdigit():
        return int(head[1:])
    return None


def hospital_mesh(
    hospitals: int, nodes_per_hospital: int, links_per_hospital: int = 2, seed: int = 0
) -> nx.Graph:
    """Hospitals as cliques of their nodes, joined through one gateway each.

    Node ``h{H}-n0`` is hospital H's gateway. Gateways form a connected random
    ``links_per_hospital``-regular mesh when such a graph exists, else a ring plus random
    chords up to that degree; the degree is capped at ``hospitals - 1``.
    """
    _need(hospitals >= 2, f"a hospital mesh needs at least 2 hospitals, got {hospitals}")
    _need(nodes_per_hospital >= 1, f"nodes per hospital must be >= 1, got {nodes_per_hospital}")
    _need(links_per_hospital >= 1, f"links per hospital must be >= 1, got {links_per_hospital}")
    g = nx.Graph()
    for h in range(hospitals):
        members = [f"h{h}-n{k}" for k in range(nodes_per_hospital)]
        for v in members:
            g.add_node(v, hospital=h)
        g.add_edges_from((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    degree = min(links_per_hospital, hospitals - 1)
    gateways = [f"h{h}-n0" for h in range(hospitals)]
    g.add_edges_from(_gateway_mesh(gateways, degree, seed).edges)
    return g


def _gateway_mesh(gateways: list[str], degree: int, seed: int) -> nx.Graph:
    n = len(gateways)
    if degree == 1 or n == 2:
        # A tree is the sparsest connected mesh; a path keeps every gateway's degree <= 2.
        path = nx.Graph()
        path.add_edges_from(itertools.pairwise(gateways))
        return path
    if degree == n - 1:
        mesh = nx.complete_graph(gateways)
        return mesh
    if n >= 3 and (n * degree) % 2 == 0:
        regular = random_regular(n, degree, seed=seed)
        return nx.relabel_nodes(regular, dict(zip(node_ids(n), gateways, strict=True)))
    # n*degree odd: no regular graph exists, so start from a ring and add chords greedily.
    rng = _random.Random(seed)
    mesh = nx.cycle_graph(gateways)
    candidates = [(a, b) for i, a in enumerate(gateways) for b in gateways[i + 1 :]]
    rng.shuffle(candidates)
    for a, b in candidates:
        if mesh.degree[a] < degree and mesh.degree[b] < degree and not mesh.has_edge(a, b):
            mesh.add_edge(a, b)
    return mesh
