"""One ``gossipfl sim`` call: load data once, split it once per peer count, then run every
(topology, algorithm) pair and baseline on that same split, writing one run directory."""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Iterator
from typing import Any

import networkx as nx
import numpy as np
import torch

from gossipfl import __version__
from gossipfl.datasets import load_dataset
from gossipfl.partition import partition
from gossipfl.rundir import MetricsWriter, write_config
from gossipfl.threads import PEER_THREADS, available_cores, using_threads
from sim.config import SimConfig
from sim.task import Task, make_task
from topologies import hospital_id, second_eigenvalue_modulus
from topologies.spec import build

__all__ = ["run_simulation"]

Row = dict[str, Any]


# Largest stack (peers x parameters, in floats) for which freed memory is kept for reuse.
_RETAIN_LIMIT = 1 << 25


def _reuse_freed_memory() -> None:
    """Tell glibc to keep freed blocks up to 64 MB for reuse instead of unmapping them.

    Every round allocates and frees tens of MB of gradients and mixed parameters; by
    default glibc serves blocks that size with fresh mmaps, so each round pays page faults
    on all of them (about a fifth of a 1,000-peer round). Only worth it for mid-sized
    stacks: with 10,000 peers the retained, fragmented heap costs more memory than the
    page faults cost time. Other C libraries are left alone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, ctypes.c_int(64 << 20))
    libc.mallopt(m_trim_threshold, ctypes.c_int(64 << 20))


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        print("gossipfl sim: no CUDA device available, running on the CPU", file=sys.stderr)
        return torch.device("cpu")
    return torch.device(name)


def _groups(graph: nx.Graph) -> np.ndarray | None:
    hospitals = [hospital_id(str(v)) for v in graph.nodes]
    if any(h is None for h in hospitals):
        return None
    return np.array(hospitals, dtype=np.int64)


class _Splits:
    """One data split per peer count (and hospital layout), shared by every run using it."""

    def __init__(self, config: SimConfig, labels: np.ndarray) -> None:
        self.config = config
        self.labels = labels
        self.cache: dict[tuple[int, bytes | None], list[np.ndarray]] = {}

    def get(self, peers: int, groups: np.ndarray | None) -> list[np.ndarray]:
        key = (peers, None if groups is None else groups.tobytes())
        if key not in self.cache:
            self.cache[key] = partition(
                self.labels,
                peers,
                self.config.partition,
                self.config.seed,
                self.config.alpha,
                groups,
            )
        return self.cache[key]


def _plan(
    config: SimConfig, graphs: list[nx.Graph]
) -> list[tuple[str, str, nx.Graph | None, int, np.ndarray | None]]:
    """(algorithm, topology name, graph, peers, hospital groups) for every run, in order."""
    runs = []
    first_split: tuple[int, np.ndarray | None] | None = None
    for spec, graph in zip(config.topologies, graphs, strict=True):
        groups = _groups(graph)
        if config.partition == "by-hospital" and groups is None:
            raise ValueError(f"by-hospital partitions need a hospital-mesh topology, not {spec.name}")
        for algorithm in config.algorithms:
            runs.append((algorithm, spec.name, graph, graph.number_of_nodes(), groups))
        if first_split is None:
            first_split = (graph.number_of_nodes(), groups)
    if first_split is None and config.clients:
        first_split = (config.clients, None)
    for baseline in config.baselines:
        assert first_split is not None  # SimConfig requires topologies or clients for baselines
        peers, groups = first_split  # baselines use the first topology's split
        runs.append((baseline, baseline, None, peers, groups))
    return runs


def run_simulation(config: SimConfig, progress: bool = True) -> Iterator[Row]:
    """Run everything ``config`` asks for, writing ``config.out`` if set; yields each row.

    torch computes with ``config.threads`` threads meanwhile (0: every core for the
    vectorized engine, one for the network engine's in-process peers).
    """
    automatic = available_cores() if config.engine == "vectorized" else PEER_THREADS
    with using_threads(config.threads, automatic):
        yield from _simulate(config, progress)


def _simulate(config: SimConfig, progress: bool) -> Iterator[Row]:
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    device = _device(config.device)
    data = load_dataset(config.dataset, config.seed, config.test_fraction, config.label)
    task = make_task(data, config.train, config.seed, device)
    splits = _Splits(config, data.y_train)
    graphs = [build(spec) for spec in config.topologies]
    runs = _plan(config, graphs)
    num_params = sum(p.numel() for p in task.new_model().parameters())
    if max(peers for *_, peers, _ in runs) * num_params <= _RETAIN_LIMIT:
        _reuse_freed_memory()
    stats = [
        {
            "name": spec.name,
            "peers": g.number_of_nodes(),
            "lambda2": second_eigenvalue_modulus(config.mixing_for(g, push_sum=g.is_directed())),
        }
        for spec, g in zip(config.topologies, graphs, strict=True)
    ]
    writer = None
    if config.out is not None:
        write_config(
            config.out,
            {
                "gossipfl_version": __version__,
                "command": sys.argv,
                "engine": config.engine,
                "sim": config.to_json(),
                "topology_stats": stats,
                "model_bytes": task.model_bytes,
                "num_params": num_params,
                "torch_threads": torch.get_num_threads(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
        writer = MetricsWriter(config.out)
    total = config.train.rounds * len(runs)
    bar = tqdm(total=total, disable=not progress, unit="round", dynamic_ncols=True, file=sys.stderr)
    try:
        for algorithm, topology, graph, peers, groups in runs:
            what = f"{algorithm}" if graph is None else f"{algorithm} on {topology}"
            bar.set_description(f"{what} ({peers} peers)")
            for row in _run_one(
                config, task, algorithm, topology, graph, splits.get(peers, groups), bar.update
            ):
                if writer is not None:
                    writer.write(row)
                bar.set_postfix(acc=f"{row['test_accuracy']:.3f}", refresh=False)
                yield row
    finally:
        bar.close()
        if writer is not None:
            writer.close()


def _run_one(
    config: SimConfig,
    task: Task,
    algorithm: str,
    topology: str,
    graph: nx.Graph | None,
    parts: list[np.ndarray],
    tick: Any,
) -> Iterator[Row]:
    if config.engine == "network":
        from sim.network import run_network

        assert graph is not None
        return run_network(config, task, topology, graph, parts, on_round=lambda: tick(1 / len(parts)))
    from sim.vectorized import run_vectorized

    return run_vectorized(config, task, algorithm, topology, graph, parts, on_round=lambda: tick(1))
