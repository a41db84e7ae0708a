"""The network engine: N real peers on loopback ports in this process, through the same
code as deployed peers (plain HTTP, since every peer is local).

Every simulator option reaches the peers: the algorithm, combine rule and outgoing transform
(``[gossip]``), the mixing weights and ``--lazy``, the initial models (``--init``: each peer
starts from its row of the vectorized engine's stack), and ``--dropout-prob`` and pairwise
matchings through ``gossipfl.schedule.Simulated``, which draws exactly what the vectorized
engine draws.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import networkx as nx
import numpy as np

from gossipfl.algorithms import get_algorithm
from gossipfl.config import DataConfig, GossipConfig, NetworkConfig
from gossipfl.learning.stacked import PeerData, StackedModels
from gossipfl.learning.trainer import TorchTrainer
from gossipfl.schedule import Simulated
from sim.config import PYTHON_DATA, SimConfig
from sim.fleet import Fleet, bind_loopback, loopback_configs, make_peers, wire_loopback
from sim.task import Task

__all__ = ["run_network"]


def run_network(
    config: SimConfig,
    task: Task,
    algorithm: str,
    topology: str,
    graph: nx.Graph,
    parts: list[np.ndarray],
    on_round: Callable[[], None] = lambda: None,
) -> Iterator[dict[str, Any]]:
    """One algorithm over real HTTP between real peers; yields the simulator's metrics rows."""
    get_algorithm(algorithm).check_graph(graph, config.mixing_rule)
    from gossipfl.node.recorder import log

    nodes = [str(v) for v in graph.nodes]
    index = {v: i for i, v in enumerate(nodes)}
    train = dataclasses.replace(config.train, mode="sync", seed=config.seed)
    configs = loopback_configs(
        graph,
        # The trainers are built here from the simulator's split; the configs only record it
        # (data handed in from Python has no dataset name a peer could load).
        data=lambda part, parts: DataConfig(
            dataset="digits" if config.dataset == PYTHON_DATA else config.dataset,
            part=part,
            parts=parts,
            seed=config.seed,
        ),
        train=train,
        # Every peer lives in this process: a neighbour that misses a minute is broken.
        network=NetworkConfig(round_timeout_s=60.0, request_timeout_s=30.0),
        gossip=GossipConfig(
            algorithm=algorithm,
            mixing=config.mixing_rule,
            lazy=config.lazy,
            rule=config.rule,
            transform=config.transform,
        ),
    )
    start = StackedModels(task.new_model(), len(nodes), init=config.init, seed=config.seed)
    trainers = []
    for v in nodes:
        data = PeerData(
            [parts[index[v]]], task.x_train, task.y_train, task.device, seed=config.seed, peer_ids=[index[v]]
        )
        trainer = TorchTrainer(task.new_model(), data, task.x_test, task.y_test, train, loss_fn=task.loss_fn)
        trainer.set_weights(start.unflatten(start.flat[index[v]]))
        trainers.append(trainer)
    undirected = graph.to_undirected() if graph.is_directed() else graph
    schedule = Simulated(
        nodes,
        [(str(a), str(b)) for a, b in undirected.edges if a != b],
        seed=config.seed,
        dropout_prob=config.dropout_prob,
    )
    sockets = bind_loopback(len(nodes))
    peers = make_peers(
        wire_loopback(configs, sockets), trainers, insecure=True, sockets=sockets, schedule=schedule
    )
    fleet = Fleet(peers, config.eval_every, on_round=on_round)
    level = log.level
    log.setLevel("WARNING")  # the simulator shows a progress bar, not one line per peer-round
    try:
        asyncio.run(fleet.run())
    finally:
        log.setLevel(level)
    yield from fleet.rows(task.new_model(), task.x_test, task.y_test, algorithm=algorithm, topology=topology)
