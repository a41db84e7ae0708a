"""The algorithms against each other and against FedAvg, on real data."""

import pytest


def strip(rows):  # type: ignore[no-untyped-def]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_complete_graph_uniform_equals_fedavg_with_equal_partitions(simulate) -> None:  # type: ignore[no-untyped-def]
    # iris keeps 120 training samples: 8 peers hold 15 each.
    common = {"dataset": "iris", "rounds": 30, "local_steps": 3, "eval_every": 5}
    dpsgd = simulate("complete", 8, mixing="uniform", **common)
    fedavg = simulate("complete", 8, algorithms=(), baselines=("fedavg",), **common)
    assert [r["round"] for r in dpsgd] == [r["round"] for r in fedavg]
    for a, b in zip(dpsgd, fedavg, strict=True):
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6)
        if a["train_loss"] is not None:
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["consensus_distance"] < 1e-10  # the complete graph reaches consensus each round
        # 8*7 messages vs 2*8 (a real message also carries its sender, round and degree)
        assert a["bytes_sent"] == pytest.approx(b["bytes_sent"] * 7 / 2, rel=0.01)


def test_ring_of_16_within_two_points_of_fedavg_on_iid_digits(simulate) -> None:  # type: ignore[no-untyped-def]
    common = {"rounds": 150, "local_steps": 2, "eval_every": 150}
    ring = simulate("ring", 16, **common)[-1]
    fedavg = simulate("ring", 16, algorithms=(), baselines=("fedavg",), **common)[-1]
    assert fedavg["test_accuracy"] > 0.9
    assert abs(ring["test_accuracy"] - fedavg["test_accuracy"]) <= 0.02


@pytest.mark.parametrize("algorithm", ["dpsgd", "pushsum", "gossip"])
def test_every_algorithm_is_deterministic_and_learns(simulate, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    options = {"rounds": 40, "eval_every": 20, "algorithms": (algorithm,), "dropout_prob": 0.1}
    first, second = simulate("ring", 8, **options), simulate("ring", 8, **options)
    assert strip(first) == strip(second)
    assert first[-1]["test_accuracy"] > 0.6
    assert first[-1]["bytes_sent"] > 0


def test_baselines_are_deterministic(simulate) -> None:  # type: ignore[no-untyped-def]
    options = {
        "rounds": 20,
        "eval_every": 10,
        "algorithms": (),
        "baselines": ("fedavg", "central"),
        "client_fraction": 0.5,
    }
    assert strip(simulate(None, 8, **options)) == strip(simulate(None, 8, **options))


def test_local_epochs_momentum_and_cnn(simulate) -> None:  # type: ignore[no-untyped-def]
    rows = simulate("ring", 4, rounds=5, local_epochs=1, momentum=0.9, model="cnn", lr=0.05, eval_every=5)
    assert rows[-1]["test_accuracy"] > 0.5


def test_non_iid_partition_runs_by_hospital(simulate) -> None:  # type: ignore[no-untyped-def]
    from sim.config import SimConfig
    from sim.runner import run_simulation
    from topologies.spec import TopologySpec

    spec = TopologySpec("hospital-mesh", hospitals=3, nodes_per_hospital=3)
    rows = list(run_simulation(SimConfig(topologies=(spec,), partition="by-hospital"), progress=False))
    assert rows[-1]["peers"] == 9 and rows[-1]["test_accuracy"] > 0.3


def test_dpsgd_on_a_directed_graph_is_refused(simulate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="pushsum"):
        simulate("directed-ring", 5, rounds=2)


def test_network_engine_matches_vectorized_engine(simulate) -> None:  # type: ignore[no-untyped-def]
    common = {"rounds": 8, "local_steps": 2, "eval_every": 4}
    vectorized = simulate("ring", 4, **common)
    network = simulate("ring", 4, engine="network", **common)
    assert [r["round"] for r in network] == [r["round"] for r in vectorized]
    for v, n in zip(vectorized, network, strict=True):
        # Same split, init and minibatches; only float summation order differs.
        assert n["test_accuracy"] == pytest.approx(v["test_accuracy"], abs=0.01)
        assert n["consensus_distance"] == pytest.approx(v["consensus_distance"], rel=1e-3, abs=1e-9)
        assert n["bytes_sent"] == pytest.approx(v["bytes_sent"], rel=0.01)
