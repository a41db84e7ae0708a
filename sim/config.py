"""The simulator's settings: one frozen value, validated once, written to config.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import networkx as nx
import scipy.sparse as sp

from gossipfl import checks
from gossipfl.algorithms import ALGORITHMS as _ALGORITHMS
from gossipfl.algorithms import Mixing
from gossipfl.config import TrainConfig
from gossipfl.errors import ConfigError
from gossipfl.learning.datasets import check_dataset
from gossipfl.learning.partition import PARTITIONS
from gossipfl.outgoing import TRANSFORMS
from gossipfl.rules import RULES
from topologies.mixing import mixing_matrix
from topologies.spec import TopologySpec

__all__ = [
    "ALGORITHMS",
    "BASELINES",
    "DATASET_DEFAULTS",
    "ENGINES",
    "INITS",
    "MIXINGS",
    "SimConfig",
]

ALGORITHMS = tuple(_ALGORITHMS)
# The centralized baselines (sim.vectorized runs them): name -> label in plots.
BASELINES = {"fedavg": "FedAvg (server)", "central": "centralized SGD"}
# Where the peers run: name -> what it is, for --help.
ENGINES = {
    "vectorized": "all peers as batched tensors in this process",
    "network": "real peers over loopback HTTP (every algorithm and option)",
}
# How peers' initial models relate.
INITS = {"shared": "all peers start from one model", "independent": "each peer from its own"}
# dpsgd's mixing weights; auto is Metropolis–Hastings.
MIXINGS = ("auto", "metropolis", "uniform")
# The dataset name of data handed in from Python (sim.api.simulate), which no file names.
PYTHON_DATA = "python"

# Defaults that train well on each dataset in a few hundred rounds.
DATASET_DEFAULTS: dict[str, TrainConfig] = {
    "iris": TrainConfig(model="mlp", hidden=(16,), lr=0.1, batch_size=16),
    "digits": TrainConfig(model="mlp", hidden=(64, 64), lr=0.1, batch_size=32),
    "breast-cancer": TrainConfig(model="mlp", hidden=(32,), lr=0.05, batch_size=32),
    "mnist1d": TrainConfig(model="mlp", hidden=(100, 100), lr=0.1, batch_size=32),
    "synthetic": TrainConfig(model="mlp", hidden=(32,), lr=0.1, batch_size=32),
}
FILE_DEFAULTS = TrainConfig(model="mlp", hidden=(64,), lr=0.05, batch_size=32)


@dataclasses.dataclass(frozen=True)
class SimConfig:
    topologies: tuple[TopologySpec, ...]
    algorithms: tuple[str, ...] = ("dpsgd",)
    baselines: tuple[str, ...] = ()
    dataset: str = "digits"
    partition: str = "iid"
    partition_file: Path | None = None  # the user's own split (JSON); overrides partition
    alpha: float = 0.5
    label: str = "label"
    test_fraction: float = 0.2
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    init: str = "shared"
    mixing: str = "auto"
    lazy: bool = False
    rule: str = "mean"
    transform: str = "identity"
    dropout_prob: float = 0.0
    client_fraction: float = 1.0
    eval_every: int = 10
    seed: int = 0
    device: str = "cpu"
    engine: str = "vectorized"
    out: Path | None = None
    clients: int | None = None  # baselines' client count when no topology fixes it
    threads: int = 0  # torch's compute threads; 0: automatic (see gossipfl.threads)

    def __post_init__(self) -> None:
        if not all(isinstance(t, TopologySpec) for t in self.topologies):
            raise ConfigError(f"expected TopologySpec values, got {self.topologies!r}", "topologies")
        _one_of("algorithm", self.algorithms, ALGORITHMS)
        _one_of("baseline", self.baselines, BASELINES)
        if self.dataset != PYTHON_DATA:
            check_dataset(self.dataset)
        checks.one_of("partition", self.partition, PARTITIONS)
        if self.partition_file is not None and not isinstance(self.partition_file, Path):
            raise ConfigError(f"expected a path or None, got {self.partition_file!r}", "partition_file")
        object.__setattr__(self, "alpha", checks.real("alpha", self.alpha, 0.0, low_open=True))
        checks.text("label", self.label)
        checks.real("test_fraction", self.test_fraction, 0.01, 0.9)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"expected a TrainConfig, got {self.train!r}", "train")
        checks.one_of("init", self.init, INITS)
        checks.one_of("mixing", self.mixing, MIXINGS)
        if not isinstance(self.lazy, bool):
            raise ConfigError(f"expected true or false, got {self.lazy!r}", "lazy")
        checks.one_of("rule", self.rule, tuple(RULES))
        checks.one_of("transform", self.transform, tuple(TRANSFORMS))
        checks.real("dropout_prob", self.dropout_prob, 0.0, 1.0, high_open=True)
        checks.real("client_fraction", self.client_fraction, 0.0, 1.0, low_open=True)
        checks.integer("eval_every", self.eval_every, 1)
        checks.integer("seed", self.seed, 0)
        checks.text("device", self.device)
        checks.one_of("engine", self.engine, ENGINES)
        if self.out is not None and not isinstance(self.out, Path):
            raise ConfigError(f"expected a path or None, got {self.out!r}", "out")
        if self.clients is not None:
            checks.integer("clients", self.clients, 1)
        checks.integer("threads", self.threads, 0)
        if not self.algorithms and not self.baselines:
            raise ConfigError("nothing to run: give --algorithm and/or --baseline")
        if self.algorithms and not self.topologies:
            raise ConfigError("decentralized algorithms need --topology")
        if self.baselines and not self.topologies and not self.clients:
            raise ConfigError("baselines without --topology need --peers (the number of clients)")
        if self.engine == "network" and self.baselines:
            raise ConfigError("the network engine runs peers, not baselines: use the vectorized one")
        if self.engine == "network" and self.device != "cpu":
            raise ConfigError("the network engine runs real peers on the CPU; drop --device")

    @property
    def mixing_rule(self) -> Mixing:
        """The weights dpsgd mixes with (``auto`` is Metropolis–Hastings)."""
        return "uniform" if self.mixing == "uniform" else "metropolis"

    def mixing_for(self, graph: nx.Graph, *, push_sum: bool) -> sp.csr_matrix:
        """The matrix the engines mix ``graph`` with: column-stochastic push-sum weights (an
        undirected graph counts as both directions), else ``--mixing`` (auto: Metropolis)."""
        if push_sum:
            directed = graph if graph.is_directed() else graph.to_directed()
            return mixing_matrix(directed, "push-sum", make_lazy=self.lazy)
        return mixing_matrix(graph, self.mixing_rule, make_lazy=self.lazy)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["out"] = str(self.out) if self.out else None
        data["partition_file"] = str(self.partition_file) if self.partition_file else None
        return data


def _one_of(what: str, given: tuple[str, ...], allowed: Iterable[str]) -> None:
    for value in given:
        if value not in allowed:
            raise ConfigError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}", f"{what}s")
