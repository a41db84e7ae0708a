"""Bring your own model: a network with BatchNorm, your loss and your split, trained by the
simulator and then between two real peers over HTTP, with no hand-written trainer.

    python3 scripts/byo_model.py --out runs/byo

1. ``sim.api.simulate`` runs it on a ring of 8 simulated peers (D-PSGD) beside FedAvg and
   writes a run directory (plot it with ``gossipfl plot runs/byo/sim``).
2. Two real peers, alice and bob, each hold half the data and gossip over loopback HTTP
   through the built-in ``TorchTrainer``, which takes the same module and loss.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch import nn

from gossipfl import Peer
from gossipfl.config import DataConfig, NetworkConfig, TrainConfig
from gossipfl.learning.datasets import load_dataset
from gossipfl.learning.stacked import PeerData
from gossipfl.learning.trainer import TorchTrainer
from sim.api import simulate
from sim.fleet import bind_loopback, loopback_configs, wire_loopback


class Net(nn.Module):
    """A small MLP with batch normalisation: buffers that each peer updates and averages."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(features, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def smoothed_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Your own loss: per-sample cross-entropy with label smoothing."""
    return nn.functional.cross_entropy(outputs, targets, reduction="none", label_smoothing=0.05)


async def two_peers(net: Net, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> None:
    graph = nx.Graph([("alice", "bob")])
    train = TrainConfig(rounds=15, local_steps=10, lr=0.1, batch_size=32)
    configs = loopback_configs(
        graph,
        data=lambda part, parts: DataConfig(part=part, parts=parts),
        train=train,
        network=NetworkConfig(round_timeout_s=30.0),
    )
    sockets = bind_loopback(2)
    halves = np.array_split(np.random.default_rng(0).permutation(len(y)), 2)
    peers_start = TorchTrainer(
        net, PeerData([halves[0]], torch.from_numpy(x), torch.from_numpy(y), torch.device("cpu")),
        torch.from_numpy(x_test), torch.from_numpy(y_test), train, loss_fn=smoothed_cross_entropy,
    ).get_weights()  # fmt: skip
    peers = []
    for i, (config, sock) in enumerate(zip(wire_loopback(configs, sockets), sockets, strict=True)):
        data = PeerData(
            [halves[i]], torch.from_numpy(x), torch.from_numpy(y), torch.device("cpu"), peer_ids=[i]
        )
        trainer = TorchTrainer(
            Net(x.shape[1], int(y.max()) + 1) if i else net,
            data,
            torch.from_numpy(x_test),
            torch.from_numpy(y_test),
            train,
            loss_fn=smoothed_cross_entropy,
        )
        trainer.set_weights(peers_start)  # both start from the same model
        peers.append(Peer(config, trainer, insecure=True, sock=sock))
    for peer in peers:
        await peer.start(gossip=False)
    try:
        for peer in peers:
            peer.start_gossip()
        await asyncio.gather(*(p.wait() for p in peers))
    finally:
        for peer in peers:
            await peer.stop()
    for peer in peers:
        buffers = [k for k in peer.weights if "running" in k]
        print(
            f"{peer.id}: test accuracy {peer.last_accuracy:.3f} after 15 rounds; gossiped buffers {buffers}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/byo"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    digits = load_dataset("digits")
    torch.manual_seed(0)
    net = Net(digits.num_features, digits.num_classes)
    data = (digits.x_train, digits.y_train, digits.x_test, digits.y_test)
    rows = simulate(
        topology="ring",
        peers=8,
        model=net,
        loss_fn=smoothed_cross_entropy,
        data=data,
        partition="dirichlet",
        baselines=("fedavg",),
        rounds=60,
        lr=0.1,
        eval_every=20,
        out=args.out / "sim",
        progress=True,
    )
    for row in rows:
        if row["round"] == 60:
            print(f"simulated {row['algorithm']}: test accuracy {row['test_accuracy']:.3f}")
    print(f"wrote {args.out / 'sim'}; plot it with: gossipfl plot {args.out / 'sim'} -o byo.png")
    asyncio.run(two_peers(net, *data))


if __name__ == "__main__":
    main()
