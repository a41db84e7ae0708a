"""Turning a topology into one peer config file per node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import networkx as nx

from gossipfl.algorithms import get_algorithm
from gossipfl.config import (
    DataConfig,
    GossipConfig,
    NeighborConfig,
    PeerConfig,
    TrainConfig,
    links,
    write_peer_config,
)
from topologies.graph_io import save_graph

__all__ = ["TOPOLOGY_FILE", "export_peer_configs"]

# Written beside the peer configs so `launch` and `plot` know the graph they came from.
TOPOLOGY_FILE = "topology.json"


def export_peer_configs(
    graph: nx.Graph,
    out: Path,
    *,
    host: str,
    base_port: int,
    data: Callable[[int, int], DataConfig],
    train: TrainConfig,
) -> list[Path]:
    """Write ``out/<id>.toml`` for every node; node i listens on ``base_port + i``."""
    if graph.is_directed():
        get_algorithm("pushsum").check_graph(graph)
    nodes = [str(v) for v in graph.nodes]
    if not (base_port > 0 and base_port + len(nodes) - 1 < 65536):
        raise ValueError(f"ports {base_port}..{base_port + len(nodes) - 1} are not all valid")
    port = {v: base_port + i for i, v in enumerate(nodes)}
    # IPv6 literals need brackets inside a URL.
    url_host = f"[{host}]" if ":" in host else host
    # Every config is built, and so checked, before the first file is written.
    configs = [
        PeerConfig(
            id=v,
            host=host,
            port=port[v],
            neighbors=tuple(
                NeighborConfig(n.id, f"http://{url_host}:{port[n.id]}", n.direction) for n in links(graph, v)
            ),
            data=data(i, len(nodes)),
            train=train,
            # A digraph's peers run push-sum: plain averaging would be biased on directed links.
            gossip=GossipConfig(algorithm="pushsum") if graph.is_directed() else GossipConfig(),
            output_dir=out / "out" / v,
        )
        for i, v in enumerate(nodes)
    ]
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_peer_config(config, out / f"{config.id}.toml") for config in configs]
    save_graph(graph, out / TOPOLOGY_FILE)
    return paths
