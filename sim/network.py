"""The network engine: N real peers on loopback ports in this process, through the same
code as deployed peers (plain HTTP, since every peer is local)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import networkx as nx
import numpy as np

from gossipfl.config import DataConfig, NetworkConfig
from gossipfl.fleet import Fleet, bind_loopback, loopback_configs, make_peers, wire_loopback
from gossipfl.stacked import PeerData
from gossipfl.trainer import TorchTrainer
from sim.config import SimConfig
from sim.task import Task

__all__ = ["run_network"]


def run_network(
    config: SimConfig,
    task: Task,
    topology: str,
    graph: nx.Graph,
    parts: list[np.ndarray],
    on_round: Callable[[], None] = lambda: None,
) -> Iterator[dict[str, Any]]:
    """D-PSGD over real HTTP between real peers; yields the simulator's metrics rows."""
    if graph.is_directed():
        raise ValueError("the network engine needs an undirected topology")
    from gossipfl.peer import log

    nodes = [str(v) for v in graph.nodes]
    index = {v: i for i, v in enumerate(nodes)}
    train = dataclasses.replace(config.train, mode="sync", seed=config.seed)
    configs = loopback_configs(
        graph,
        data=lambda part, parts: DataConfig(dataset=config.dataset, part=part, parts=parts, seed=config.seed),
        train=train,
        # Every peer lives in this process: a neighbour that misses a minute is broken.
        network=NetworkConfig(round_timeout_s=60.0, request_timeout_s=30.0),
    )
    trainers = [
        TorchTrainer(
            task.new_model(),
            PeerData(
                [parts[index[v]]],
                task.x_train,
                task.y_train,
                task.device,
                seed=config.seed,
                peer_ids=[index[v]],
            ),
            task.x_test,
            task.y_test,
            train,
        )
        for v in nodes
    ]
    sockets = bind_loopback(len(nodes))
    peers = make_peers(wire_loopback(configs, sockets), trainers, insecure=True, sockets=sockets)
    fleet = Fleet(peers, config.eval_every, on_round=on_round)
    level = log.level
    log.setLevel("WARNING")  # the simulator shows a progress bar, not one line per peer-round
    try:
        asyncio.run(fleet.run())
    finally:
        log.setLevel(level)
    yield from fleet.rows(
        task.new_model(),
        task.x_test,
        task.y_test,
        algorithm="dpsgd",
        topology=topology,
    )
