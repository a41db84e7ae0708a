import dataclasses

import pytest

from sim.config import DATASET_DEFAULTS, SimConfig
from sim.runner import run_simulation
from topologies.spec import TopologySpec


@pytest.fixture
def simulate():  # type: ignore[no-untyped-def]
    """Run a simulation in-process and return its rows."""

    def run(topology: str | None, peers: int, *, dataset: str = "digits", **options):  # type: ignore[no-untyped-def]
        train_opts = {
            k: options.pop(k)
            for k in list(options)
            if k
            in {"rounds", "lr", "local_steps", "local_epochs", "batch_size", "momentum", "model", "hidden"}
        }
        train = dataclasses.replace(DATASET_DEFAULTS[dataset], **train_opts)
        topologies = (TopologySpec(topology, peers=peers),) if topology else ()
        config = SimConfig(topologies=topologies, dataset=dataset, train=train, clients=peers, **options)
        return list(run_simulation(config, progress=False))

    return run
