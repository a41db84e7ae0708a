"""The simulator from Python, with your own model, loss, data and partition.

::

    from sim.api import simulate

    rows = simulate(
        topology="ring",              # a kind (with peers=), a TopologySpec, a graph file or an nx.Graph
        peers=16,
        model=MyNet(),                # any torch.nn.Module; BatchNorm and other buffers included
        loss_fn=my_loss,              # (outputs, targets) -> per-sample losses; default cross-entropy
        data=(x_train, y_train, x_test, y_test),   # arrays or tensors, or (train, test) torch Datasets
        partition={"p0": [0, 5, ...], ...},        # or "iid"/"dirichlet"/..., or one index list per peer
        algorithms=("dpsgd", "gossip"),
        baselines=("fedavg",),
        rounds=100,
        out="runs/mine",              # the same run directory as `gossipfl sim` writes
    )

Every peer starts from a copy of ``model``. Floating-point buffers (BatchNorm's running
statistics) are per peer, updated by each peer's own training and averaged with the
parameters; integer buffers stay with each peer. Accuracy (``test_accuracy``) is the argmax
of the outputs against integer targets. A user partition is written to
``out/partition.json``, so the run directory records it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from gossipfl.learning.datasets import Dataset
from gossipfl.learning.stacked import LossFn
from sim.config import DATASET_DEFAULTS, FILE_DEFAULTS, PYTHON_DATA, SimConfig
from sim.runner import Partition, run_simulation
from topologies.graph_io import save_graph
from topologies.spec import TopologySpec

__all__ = ["as_dataset", "simulate"]

Arrays = tuple[Any, Any, Any, Any]


def _array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _stack(dataset: Iterable[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in dataset:
        xs.append(_array(x))
        ys.append(_array(y))
    if not xs:
        raise ValueError("the dataset is empty")
    return np.stack(xs), np.stack(ys)


def as_dataset(data: Arrays | tuple[Any, Any], name: str = "python") -> Dataset:
    """``(x_train, y_train, x_test, y_test)`` arrays/tensors, or ``(train, test)`` torch
    Datasets (iterables of (x, y)), as the simulator's ``Dataset``."""
    if len(data) == 2:
        (x_train, y_train), (x_test, y_test) = _stack(data[0]), _stack(data[1])
    elif len(data) == 4:
        x_train, y_train, x_test, y_test = (_array(a) for a in data)
    else:
        raise ValueError("data must be (x_train, y_train, x_test, y_test) or (train, test) datasets")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError("features and targets differ in length")
    integer = y_train.dtype.kind in "iub"
    if integer:
        classes = int(max(y_train.max(), y_test.max())) + 1
    else:  # regression or soft targets: one output per target column
        classes = int(y_train.reshape(len(y_train), -1).shape[1])
    return Dataset(
        name=name,
        x_train=x_train.astype(np.float32),
        y_train=y_train.astype(np.int64) if integer else y_train.astype(np.float32),
        x_test=x_test.astype(np.float32),
        y_test=y_test.astype(np.int64) if integer else y_test.astype(np.float32),
        num_classes=classes,
        image_shape=tuple(x_train.shape[1:]) if x_train.ndim > 2 else None,
    )


def _topology(topology: str | TopologySpec | nx.Graph, peers: int | None, out: Path | None) -> TopologySpec:
    if isinstance(topology, TopologySpec):
        return topology
    if isinstance(topology, nx.Graph):
        if out is None:
            raise ValueError("an nx.Graph topology needs out= (the graph is saved in the run directory)")
        out.mkdir(parents=True, exist_ok=True)
        path = out / "topology.json"
        save_graph(topology, path)
        return TopologySpec(str(path))
    return TopologySpec(topology, peers=peers)


def simulate(
    *,
    topology: str | TopologySpec | nx.Graph | Sequence[str | TopologySpec | nx.Graph] = (),
    peers: int | None = None,
    model: nn.Module | None = None,
    loss_fn: LossFn | None = None,
    data: str | Arrays | tuple[Any, Any] = "digits",
    partition: str | Partition = "iid",
    algorithms: Sequence[str] = ("dpsgd",),
    baselines: Sequence[str] = (),
    out: str | Path | None = None,
    progress: bool = False,
    **options: Any,
) -> list[dict[str, Any]]:
    """Run a simulation; returns its metrics rows (and writes ``out`` like ``gossipfl sim``).

    ``options`` are ``SimConfig`` fields (``engine``, ``init``, ``mixing``, ``lazy``,
    ``dropout_prob``, ``eval_every``, ``seed``, ...) and ``TrainConfig`` fields (``rounds``,
    ``lr``, ``batch_size``, ``local_steps``, ``local_epochs``, ``momentum``)."""
    out_path = Path(out) if out is not None else None
    specs = topology if isinstance(topology, (list, tuple)) else ([topology] if topology != () else [])
    train_fields = {f.name for f in dataclasses.fields(FILE_DEFAULTS)}
    train_options = {k: options.pop(k) for k in list(options) if k in train_fields}
    base = DATASET_DEFAULTS.get(data, FILE_DEFAULTS) if isinstance(data, str) else FILE_DEFAULTS
    dataset = None if isinstance(data, str) else as_dataset(data)
    scheme, parts = (partition, None) if isinstance(partition, str) else ("iid", partition)
    if parts is not None and out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        record = {str(k): [int(i) for i in v] for k, v in parts.items()} if isinstance(parts, Mapping) else [
            [int(i) for i in v] for v in parts
        ]
        (out_path / "partition.json").write_text(json.dumps(record) + "\n", encoding="utf-8")
    config = SimConfig(
        topologies=tuple(_topology(t, peers, out_path) for t in specs),
        algorithms=tuple(algorithms),
        baselines=tuple(baselines),
        dataset=data if isinstance(data, str) else PYTHON_DATA,
        partition=scheme,
        partition_file=out_path / "partition.json" if parts is not None and out_path is not None else None,
        train=dataclasses.replace(base, **train_options),
        out=out_path,
        clients=peers,
        **options,
    )
    return list(
        run_simulation(config, progress, data=dataset, model=model, loss_fn=loss_fn, parts=parts)
    )
