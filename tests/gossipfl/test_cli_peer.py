"""The README's workflow: topology -> certs -> launch -> plot, and one peer on its own."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gossipfl.cli import main
from gossipfl.config import RuntimeConfig, load_peer_config, write_peer_config
from sim.fleet import bind_loopback, wire_loopback


def free_ports_for(directory: Path) -> None:
    """Point the configs in ``directory`` at ports that are free right now."""
    paths = sorted(directory.glob("*.toml"))
    configs = [load_peer_config(p) for p in paths]
    sockets = bind_loopback(len(configs))
    wired = wire_loopback(configs, sockets)
    for s in sockets:
        s.close()
    for path, config in zip(paths, wired, strict=True):
        write_peer_config(config, path)


def test_topology_certs_launch_plot_ring_of_8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net, run = tmp_path / "net", tmp_path / "runs" / "ring8"
    assert main(["topology", "ring", "--peers", "8", "--out", str(net), "--local-steps", "5"]) == 0
    assert main(["certs", str(net)]) == 0
    free_ports_for(net)
    config = load_peer_config(net / "p3.toml")
    assert config.tls is not None and config.tls.cert.name == "p3.pem"
    assert all(n.url.startswith("https://") for n in config.neighbors)
    assert main(["launch", str(net), "--rounds", "6", "--out", str(run)]) == 0
    assert "(torch threads: 1)" in capsys.readouterr().out  # peers share this process
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == list(range(7))
    assert rows[-1]["peers"] == 8 and rows[-1]["test_accuracy"] > 0.6
    assert rows[-1]["bytes_sent"] > 0
    peer_rows = (run / "peers" / "p0" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(peer_rows[-1])["neighbours_reached"] == 2
    png = tmp_path / "ring8.png"
    assert main(["plot", str(run), "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_alice_and_bob_on_iris_reach_96_percent_within_20_rounds(tmp_path: Path) -> None:
    graph = tmp_path / "pair.json"
    graph.write_text('{"alice": ["bob"], "bob": ["alice"]}')
    net = tmp_path / "pair"
    argv = (
        f"topology {graph} --out {net} --dataset iris --hidden 32 --lr 0.05 --local-steps 10 "
        "--batch-size 16 --momentum 0.9 --rounds 20"
    )
    assert main(argv.split()) == 0
    assert main(["certs", str(net)]) == 0
    free_ports_for(net)
    assert main(["launch", str(net), "--out", str(tmp_path / "run")]) == 0
    for name in ("alice", "bob"):
        last = json.loads((tmp_path / "run" / "peers" / name / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["round"] == 20
        assert last["test_accuracy"] >= 0.96


def test_peer_command_runs_one_peer_and_refuses_plain_http_without_flag(tmp_path: Path) -> None:
    net = tmp_path / "solo"
    graph = tmp_path / "solo.edges"
    graph.write_text("solo\n")
    assert main(["topology", str(graph), "--out", str(net), "--dataset", "iris", "--rounds", "2"]) == 0
    free_ports_for(net)
    command = [sys.executable, "-m", "gossipfl", "peer", "--config", str(net / "solo.toml")]
    refused = subprocess.run(command, capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "--insecure" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = subprocess.run([*command, "--insecure"], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "with 0 neighbours (torch threads: 1)" in done.stderr  # the automatic choice
    assert "solo round 2/2" in done.stderr
    assert (net / "out" / "solo" / "checkpoint.safetensors").is_file()


def test_peer_threads_come_from_the_flag_or_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = tmp_path / "solo.edges"
    graph.write_text("solo\n")
    assert main(["topology", str(graph), "--out", str(tmp_path), "--dataset", "iris", "--rounds", "1"]) == 0
    free_ports_for(tmp_path)
    path = tmp_path / "solo.toml"
    write_peer_config(load_peer_config(path).with_changes(runtime=RuntimeConfig(threads=2)), path)
    before = torch.get_num_threads()
    caplog.set_level(logging.INFO, logger="gossipfl.node.peer")
    assert main(["peer", "--config", str(path), "--insecure"]) == 0
    assert "(torch threads: 2)" in caplog.text  # [runtime].threads
    assert main(["peer", "--config", str(path), "--insecure", "--threads", "3"]) == 0
    assert "(torch threads: 3)" in caplog.text  # the flag wins
    assert torch.get_num_threads() == before
    assert main(["peer", "--config", str(path), "--insecure", "--threads", "-1"]) == 2
    assert capsys.readouterr().err.strip().endswith("error: --threads: must be >= 0, got -1")


def test_certs_on_an_empty_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", str(tmp_path)]) == 2
    assert "no peer configs" in capsys.readouterr().err


class NumpyLogistic:
    """A Flower-style NumPyClient (get_parameters / fit / evaluate), no Flower import."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self.w = np.zeros((x.shape[1], 3), dtype=np.float32)

    def get_parameters(self, config: dict) -> list[np.ndarray]:  # type: ignore[type-arg]
        return [self.w]

    def _probs(self) -> np.ndarray:
        z = self.x @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:  # type: ignore[type-arg]
        self.w = parameters[0].copy()
        for _ in range(20):
            grad = self.x.T @ (self._probs() - np.eye(3)[self.y]) / len(self.y)
            self.w -= 0.5 * grad.astype(np.float32)
        return [self.w], len(self.y), {"loss": 0.0}

    def evaluate(self, parameters: list[np.ndarray], config: dict) -> tuple[float, int, dict]:  # type: ignore[type-arg]
        self.w = parameters[0]
        accuracy = float((self._probs().argmax(axis=1) == self.y).mean())
        return 1.0 - accuracy, len(self.y), {"accuracy": accuracy}


async def test_numpy_client_objects_gossip_through_the_adapter() -> None:
    import networkx as nx

    from gossipfl.config import NeighborConfig, PeerConfig, TrainConfig
    from gossipfl.learning.datasets import load_dataset
    from gossipfl.learning.trainer import NumPyClientTrainer
    from gossipfl.node.peer import Peer
    from sim.fleet import Fleet

    data = load_dataset("iris")
    halves = np.array_split(np.arange(len(data.y_train)), 2)
    graph = nx.Graph([("a", "b")])
    configs = [
        PeerConfig(
            id=v,
            host="127.0.0.1",
            port=0,
            neighbors=(NeighborConfig(w, "http://x:1"),),
            train=TrainConfig(rounds=5),
        )
        for v, w in (("a", "b"), ("b", "a"))
    ]
    sockets = bind_loopback(2)
    trainers = [NumPyClientTrainer(NumpyLogistic(data.x_train[h], data.y_train[h])) for h in halves]
    peers = [
        Peer(c, tr, insecure=True, sock=s)
        for c, tr, s in zip(wire_loopback(configs, sockets), trainers, sockets, strict=True)
    ]
    await Fleet(peers, every=5).run()
    assert graph.number_of_nodes() == 2
    for p in peers:
        assert p.round == 5 and p.last_accuracy > 0.8
    np.testing.assert_allclose(peers[0].weights["param_0"].numpy(), peers[1].weights["param_0"].numpy())


def test_a_directed_topology_deploys_as_push_sum_peers_over_mutual_tls(tmp_path: Path) -> None:
    net, run = tmp_path / "net", tmp_path / "run"
    assert main(["topology", "directed-ring", "--peers", "5", "--out", str(net), "--local-steps", "2"]) == 0
    config = load_peer_config(net / "p0.toml")
    assert config.gossip.algorithm == "pushsum"
    assert {(n.id, n.direction) for n in config.neighbors} == {("p1", "out"), ("p4", "in")}
    assert main(["certs", str(net)]) == 0
    free_ports_for(net)
    assert main(["launch", str(net), "--rounds", "4", "--out", str(run)]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["algorithm"] for r in rows} == {"pushsum"} and rows[-1]["bytes_sent"] > 0
    assert np.isfinite(rows[-1]["consensus_distance"])
