"""The simulator's settings: one frozen value, validated once, written to config.json."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import networkx as nx
import scipy.sparse as sp

from gossipfl.algorithms import ALGORITHMS as _ALGORITHMS
from gossipfl.algorithms import Mixing
from gossipfl.config import MODELS, PARTITIONS, TrainConfig, check_dataset
from gossipfl.outgoing import TRANSFORMS
from gossipfl.rules import RULES
from topologies.mixing import mixing_matrix
from topologies.spec import TopologySpec

__all__ = [
    "ALGORITHMS",
    "BASELINES",
    "DATASET_DEFAULTS",
    "SimConfig",
]

ALGORITHMS = tuple(_ALGORITHMS)
BASELINES = ("fedavg", "central")
ENGINES = ("vectorized", "network")
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

    def __post_init__(self) -> None:
        if self.dataset != PYTHON_DATA:
            check_dataset(self.dataset)
        _one_of("algorithm", self.algorithms, ALGORITHMS)
        _one_of("baseline", self.baselines, BASELINES)
        _one_of("partition", (self.partition,), PARTITIONS)
        _one_of("model", (self.train.model,), MODELS)
        _one_of("engine", (self.engine,), ENGINES)
        _one_of("init", (self.init,), ("shared", "independent"))
        _one_of("mixing", (self.mixing,), ("auto", "metropolis", "uniform"))
        _one_of("combine rule", (self.rule,), tuple(RULES))
        _one_of("outgoing transform", (self.transform,), tuple(TRANSFORMS))
        if not self.algorithms and not self.baselines:
            raise ValueError("nothing to run: give --algorithm and/or --baseline")
        if self.algorithms and not self.topologies:
            raise ValueError("decentralized algorithms need --topology")
        if self.baselines and not self.topologies and not self.clients:
            raise ValueError("baselines without --topology need --peers (the number of clients)")
        if not 0.0 <= self.dropout_prob < 1.0:
            raise ValueError(f"--dropout-prob must be in [0, 1), got {self.dropout_prob}")
        if not 0.0 < self.client_fraction <= 1.0:
            raise ValueError(f"--client-fraction must be in (0, 1], got {self.client_fraction}")
        if self.eval_every < 1:
            raise ValueError(f"--eval-every must be positive, got {self.eval_every}")
        if self.engine == "network" and self.baselines:
            raise ValueError("the network engine runs peers, not baselines: use the vectorized one")
        if self.engine == "network" and self.device != "cpu":
            raise ValueError("the network engine runs real peers on the CPU; drop --device")

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


def _one_of(what: str, given: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    for value in given:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")
