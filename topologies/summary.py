"""One-look description of a topology: size, degrees, diameter and spectral gap."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
from scipy.sparse import csgraph

from topologies.graph_io import simple_graph
from topologies.mixing import MixingRule, mixing_matrix, spectral_gap

__all__ = ["diameter", "summarize"]

_BFS_BLOCK = 512


def diameter(graph: nx.Graph) -> int | None:
    """Longest shortest path, or None when some peer cannot reach another."""
    n = graph.number_of_nodes()
    adjacency = nx.to_scipy_sparse_array(graph, format="csr", weight=None)
    longest = 0.0
    # Breadth-first searches in C, a block of sources at a time so memory stays O(block * n).
    for start in range(0, n, _BFS_BLOCK):
        sources = np.arange(start, min(n, start + _BFS_BLOCK))
        hops = csgraph.shortest_path(
            adjacency, directed=graph.is_directed(), unweighted=True, indices=sources
        )
        longest = max(longest, float(hops.max()))
        if np.isinf(longest):
            return None
    return int(longest)


def summarize(graph: nx.Graph, rule: MixingRule = "auto") -> dict[str, Any]:
    """The summary ``gossipfl topology --json`` prints (out-degrees for directed graphs).

    Parallel edges count once; push-sum refuses digraphs that are not strongly connected.
    """
    graph = simple_graph(graph)
    degrees = np.array(
        [d for _, d in (graph.out_degree if graph.is_directed() else graph.degree)], dtype=float
    )
    return {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "directed": graph.is_directed(),
        "degree_min": int(degrees.min()),
        "degree_mean": round(float(degrees.mean()), 4),
        "degree_max": int(degrees.max()),
        "diameter": diameter(graph),
        "spectral_gap": float(spectral_gap(mixing_matrix(graph, rule))),
    }
