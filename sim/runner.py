"""One ``gossipfl sim`` call: load data once, split it once per peer count, then run every
(topology, algorithm) pair and baseline on that same split, writing one run directory."""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from gossipfl import __version__
from gossipfl.algorithms import get_algorithm
from gossipfl.learning.datasets import Dataset, load_dataset
from gossipfl.learning.partition import check_partition, load_partition, partition
from gossipfl.learning.stacked import LossFn
from gossipfl.threads import PEER_THREADS, available_cores, using_threads
from sim.config import PYTHON_DATA, SimConfig
from sim.rundir import MetricsWriter, write_config
from sim.task import Task, make_task
from topologies import hospital_id, second_eigenvalue_modulus
from topologies.spec import TopologySpec, build

__all__ = ["run_simulation"]

Row = dict[str, Any]
Partition = Mapping[str, Sequence[int]] | Sequence[Sequence[int]]


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
    """The device ``--device`` names, resolved to the one the run will use.

    ``cpu``, ``cuda`` (the current GPU, or the CPU with a note when there is none) or
    ``cuda:N`` (exactly that GPU: refused when it does not exist); anything else is refused.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N")
    if device.type == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.index is None:
        if count == 0:
            print("gossipfl sim: no CUDA device available, running on the CPU", file=sys.stderr)
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())
    if device.index >= count:
        have = f"cuda:0 .. cuda:{count - 1}" if count else "none"
        raise ValueError(f"no CUDA device {name!r} on this machine (its CUDA devices: {have})")
    return device


def _topology_stats(config: SimConfig, spec: TopologySpec, graph: nx.Graph) -> dict[str, Any]:
    """Size and lambda_2 of a topology's mixing matrix, per algorithm that mixes with one.

    ``lambda2`` is the matrix D-PSGD mixes with on an undirected graph (``--mixing``), and the
    push-sum matrix on a directed one; ``lambda2_pushsum`` is push-sum's, present when a push-sum
    run is planned. Either refuses a graph its algorithm cannot run on.
    """
    directed = graph.is_directed()
    stats: dict[str, Any] = {
        "name": spec.name,
        "peers": graph.number_of_nodes(),
        "lambda2": second_eigenvalue_modulus(config.mixing_for(graph, push_sum=directed)),
    }
    if "pushsum" in config.algorithms:
        stats["lambda2_pushsum"] = (
            stats["lambda2"]
            if directed
            else second_eigenvalue_modulus(config.mixing_for(graph, push_sum=True))
        )
    return stats


def _groups(graph: nx.Graph) -> np.ndarray | None:
    hospitals = [hospital_id(str(v)) for v in graph.nodes]
    if any(h is None for h in hospitals):
        return None
    return np.array(hospitals, dtype=np.int64)


class _Splits:
    """One data split per peer count (and hospital layout), shared by every run using it."""

    def __init__(self, config: SimConfig, labels: np.ndarray, parts: Partition | None = None) -> None:
        self.config = config
        self.labels = labels
        self.parts = parts
        self.cache: dict[tuple[int, bytes | None], list[np.ndarray]] = {}

    def _given(self, nodes: list[str]) -> list[np.ndarray]:
        """The user's own split (from Python, or ``--partition-file``), for these peers."""
        if self.parts is not None:
            return check_partition(self.parts, nodes, len(self.labels))
        assert self.config.partition_file is not None
        return load_partition(self.config.partition_file, nodes, len(self.labels))

    def get(self, peers: int, groups: np.ndarray | None, nodes: list[str]) -> list[np.ndarray]:
        if self.parts is not None or self.config.partition_file is not None:
            return self._given(nodes)
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


def run_simulation(
    config: SimConfig,
    progress: bool = True,
    *,
    data: Dataset | None = None,
    model: nn.Module | None = None,
    loss_fn: LossFn | None = None,
    parts: Partition | None = None,
) -> Iterator[Row]:
    """Run everything ``config`` asks for, writing ``config.out`` if set; yields each row.

    ``data``, ``model``, ``loss_fn`` and ``parts`` replace the dataset, model, loss and
    partition that ``config`` names (see ``sim.api.simulate``). torch computes with
    ``config.threads`` threads meanwhile (0: every core for the vectorized engine, one for
    the network engine's in-process peers).
    """
    automatic = available_cores() if config.engine == "vectorized" else PEER_THREADS
    with using_threads(config.threads, automatic):
        yield from _simulate(config, progress, data, model, loss_fn, parts)


def _simulate(
    config: SimConfig,
    progress: bool,
    data: Dataset | None,
    model: nn.Module | None,
    loss_fn: LossFn | None,
    parts: Partition | None,
) -> Iterator[Row]:
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    device = _device(config.device)
    if data is None:
        if config.dataset == PYTHON_DATA:
            raise ValueError("dataset 'python' is data handed to sim.api.simulate(data=...)")
        data = load_dataset(config.dataset, config.seed, config.test_fraction, config.label)
    task = make_task(data, config.train, config.seed, device, model=model, loss_fn=loss_fn)
    splits = _Splits(config, data.y_train, parts)
    graphs = [build(spec) for spec in config.topologies]
    runs = _plan(config, graphs)

    def nodes(graph: nx.Graph | None) -> list[str]:  # baselines use the first topology's peers
        graph = graph if graph is not None else (graphs[0] if graphs else None)
        if graph is None:
            return [f"p{i}" for i in range(config.clients or 0)]
        return [str(v) for v in graph.nodes]

    for algorithm, topology, graph, _, _ in runs:  # refuse a bad pair before anything runs
        if graph is not None:
            try:
                get_algorithm(algorithm).check_graph(graph, config.mixing_rule)
            except ValueError as exc:
                raise ValueError(f"{algorithm} on {topology}: {exc}") from exc
    num_params = sum(p.numel() for p in task.new_model().parameters())
    if max(peers for *_, peers, _ in runs) * num_params <= _RETAIN_LIMIT:
        _reuse_freed_memory()
    stats = [_topology_stats(config, spec, g) for spec, g in zip(config.topologies, graphs, strict=True)]
    writer = None
    if config.out is not None:
        write_config(
            config.out,
            {
                "gossipfl_version": __version__,
                "command": sys.argv,
                "engine": config.engine,
                "sim": {**config.to_json(), "device": str(device)},
                "topology_stats": stats,
                "model_bytes": task.model_bytes,
                # Set when the model or loss came from Python rather than the config.
                "python_model": None if model is None else type(model).__qualname__,
                "python_loss": None if loss_fn is None else getattr(loss_fn, "__qualname__", repr(loss_fn)),
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
                config,
                task,
                algorithm,
                topology,
                graph,
                splits.get(peers, groups, nodes(graph)),
                bar.update,
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
        return run_network(
            config, task, algorithm, topology, graph, parts, on_round=lambda: tick(1 / len(parts))
        )
    from sim.vectorized import run_vectorized

    return run_vectorized(config, task, algorithm, topology, graph, parts, on_round=lambda: tick(1))
