"""Loading and saving graphs: edge list, JSON adjacency and GraphML, chosen by file suffix.

- ``.edges``/``.edgelist``/``.txt``: one ``u v`` pair a line (a lone ``u`` declares a node),
  ``#`` comments; a first line of ``# directed`` makes the graph directed.
- ``.json``: adjacency ``{"p0": ["p1", ...], ...}``; symmetric adjacency loads undirected.
- ``.graphml``: GraphML as networkx writes it; directedness is stored in the file.

Node ids are validated because they become file names, certificate names and URL parts.
Parallel edges (a GraphML multigraph) collapse into one link, since two peers exchange once
per round whatever the multiplicity; in a directed file ``u -> v`` and ``v -> u`` stay two links.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import networkx as nx

__all__ = ["SUFFIXES", "load_graph", "save_graph", "simple_graph", "validate_node_id"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EDGE_LIST = {".edges", ".edgelist", ".txt"}
SUFFIXES = (*sorted(_EDGE_LIST), ".json", ".graphml")


def validate_node_id(node: object, where: str = "graph") -> str:
    """Return ``node`` as a peer id, or raise ``ValueError`` naming where it came from."""
    text = str(node)
    if not _ID.match(text):
        raise ValueError(
            f"{where}: node id {text!r} must be 1-64 letters, digits, '_', '.' or '-' "
            "and start with a letter or digit"
        )
    return text


def simple_graph(graph: nx.Graph) -> nx.Graph:
    """``graph`` with parallel edges collapsed into one (node order kept); others as they are."""
    if not graph.is_multigraph():
        return graph
    return nx.DiGraph(graph) if graph.is_directed() else nx.Graph(graph)


def _checked(graph: nx.Graph, where: str) -> nx.Graph:
    graph = simple_graph(graph)
    if graph.number_of_nodes() == 0:
        raise ValueError(f"{where}: the graph has no nodes")
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise ValueError(f"{where}: self-loop on {loops[0][0]!r}; a peer is not its own neighbour")
    mapping = {v: validate_node_id(v, where) for v in graph.nodes}
    if len(set(mapping.values())) != len(mapping):
        raise ValueError(f"{where}: two nodes share one id once written as text")
    relabelled: nx.Graph = nx.relabel_nodes(graph, mapping, copy=True)
    return relabelled


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown graph format {suffix!r}; use one of {', '.join(SUFFIXES)}")
    return suffix


def load_graph(path: str | Path) -> nx.Graph:
    """Read a graph file; raises ``ValueError`` naming the file on any problem."""
    path = Path(path)
    suffix = _suffix(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{where}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text (byte {exc.start})") from exc
    if suffix in _EDGE_LIST:
        return _checked(_parse_edge_list(text, where), where)
    if suffix == ".json":
        return _checked(_parse_adjacency(text, where), where)
    try:
        graph = nx.parse_graphml(text)
    except Exception as exc:  # networkx raises bare exceptions of several kinds for bad XML
        raise ValueError(f"{where}: not valid GraphML ({exc})") from exc
    return _checked(graph, where)


def _parse_edge_list(text: str, where: str) -> nx.Graph:
    lines = text.splitlines()
    directed = bool(lines) and lines[0].strip().lower() == "# directed"
    graph: nx.Graph = nx.DiGraph() if directed else nx.Graph()
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            graph.add_node(parts[0])
        elif len(parts) == 2:
            graph.add_edge(parts[0], parts[1])
        else:
            raise ValueError(f"{where}:{number}: expected 'u v', got {raw.strip()!r}")
    return graph


def _parse_adjacency(text: str, where: str) -> nx.Graph:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object mapping each peer id to a list of ids")
    digraph = nx.DiGraph()
    digraph.add_nodes_from(data)  # first, so node order is the file's key order
    for node, neighbours in data.items():
        if not isinstance(neighbours, list) or not all(isinstance(n, str) for n in neighbours):
            raise ValueError(f"{where}: neighbours of {node!r} must be a list of strings")
        digraph.add_edges_from((node, n) for n in neighbours)
    symmetric = all(digraph.has_edge(v, u) for u, v in digraph.edges)
    return digraph.to_undirected() if symmetric else digraph


def save_graph(graph: nx.Graph, path: str | Path) -> Path:
    """Write ``graph`` in the format its suffix names; returns the path."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix in _EDGE_LIST:
        header = "# directed\n" if graph.is_directed() else ""
        # Listing every node first keeps node order (and so row order of W) on a round trip.
        nodes = "".join(f"{v}\n" for v in graph.nodes)
        edges = "".join(f"{u} {v}\n" for u, v in graph.edges)
        path.write_text(header + nodes + edges, encoding="utf-8")
    elif suffix == ".json":
        adjacency = {str(v): [str(n) for n in graph.neighbors(v)] for v in graph.nodes}
        path.write_text(json.dumps(adjacency, indent=1) + "\n", encoding="utf-8")
    else:
        plain = nx.DiGraph(graph) if graph.is_directed() else nx.Graph(graph)
        for _, attrs in plain.nodes(data=True):
            attrs.clear()
        nx.write_graphml(plain, path)
    return path
