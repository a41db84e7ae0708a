"""One behaviour, two engines: every registered algorithm and option, run by the vectorized
engine and by real peers over loopback HTTP on the same seed, gives the same curves.

Both engines share the split, the initial models, the minibatches, dropouts and matchings
(counter-based draws) and the weight and combine code; only float summation order differs.
Tolerances: accuracy within 0.005, consensus distance within 0.1 % (relative), and bytes
sent exactly equal (the vectorized engine sizes every message as the peers encode it).
"""

import dataclasses

import networkx as nx
import pytest

import topologies as t
from gossipfl.algorithms import ALGORITHMS
from sim.config import DATASET_DEFAULTS, SimConfig
from sim.runner import run_simulation
from topologies.spec import TopologySpec


def irregular_digraph() -> nx.DiGraph:
    graph = t.directed_ring(7)
    graph.add_edges_from([("p0", "p2"), ("p0", "p4"), ("p3", "p6")])
    return graph


def run(graph_file: str, algorithm: str, engine: str, **options: object) -> list[dict[str, object]]:
    train = dataclasses.replace(DATASET_DEFAULTS["digits"], rounds=6, local_steps=2)
    config = SimConfig(
        topologies=(TopologySpec(graph_file),),
        algorithms=(algorithm,),
        dataset="digits",
        train=train,
        eval_every=3,
        seed=7,
        engine=engine,
        **options,  # type: ignore[arg-type]
    )
    return list(run_simulation(config, progress=False))


OPTIONS = {
    "default": {},
    "independent": {"init": "independent"},
    "lazy": {"lazy": True},
    "dropout": {"dropout_prob": 0.3},
}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from topologies.graph_io import save_graph

    root = tmp_path_factory.mktemp("graphs")
    files = {}
    # Irregular on purpose: a peer that ignored its neighbours' degrees would mix differently.
    for name, graph in {
        "mesh": t.hospital_mesh(3, 3, 2, seed=2),
        "regular": t.random_regular(8, 3, seed=1),
        "digraph": irregular_digraph(),
    }.items():
        path = root / f"{name}.json"
        save_graph(graph, path)
        files[name] = str(path)
    return files


CASES = [(a, o) for a in ALGORITHMS for o in OPTIONS] + [("dpsgd", "uniform")]


@pytest.mark.parametrize(("algorithm", "option"), CASES, ids=[f"{a}-{o}" for a, o in CASES])
def test_both_engines_give_the_same_curves(graphs: dict[str, str], algorithm: str, option: str) -> None:
    options = dict(OPTIONS.get(option, {"mixing": "uniform"}))
    graph = "digraph" if algorithm == "pushsum" else "regular" if option == "uniform" else "mesh"
    vectorized = run(graphs[graph], algorithm, "vectorized", **options)
    network = run(graphs[graph], algorithm, "network", **options)
    assert [r["round"] for r in network] == [r["round"] for r in vectorized] == [0, 3, 6]
    for v, n in zip(vectorized, network, strict=True):
        assert n["test_accuracy"] == pytest.approx(v["test_accuracy"], abs=0.005)
        assert n["peer_accuracy_mean"] == pytest.approx(v["peer_accuracy_mean"], abs=0.005)
        assert n["consensus_distance"] == pytest.approx(v["consensus_distance"], rel=1e-3, abs=1e-9)
        assert n["bytes_sent"] == v["bytes_sent"]
    if option == "independent":
        assert vectorized[0]["consensus_distance"] > 1.0  # peers really start apart
    assert vectorized[-1]["bytes_sent"] > 0
