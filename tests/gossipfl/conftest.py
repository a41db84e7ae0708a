import dataclasses
from pathlib import Path

import networkx as nx
import pytest

from gossipfl.config import DataConfig, NetworkConfig, TLSConfig, TrainConfig
from gossipfl.learning.trainer import build_trainer
from gossipfl.node.peer import Peer
from gossipfl.transports.tls import create_ca, issue_certificate
from sim.fleet import bind_loopback, loopback_configs, wire_loopback

IRIS = TrainConfig(model="mlp", hidden=(32,), rounds=3, local_steps=10, lr=0.05, batch_size=16, momentum=0.9)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with certificates for a..h and 'stranger', and a second, unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    ca, key = create_ca(root)
    for name in [*"abcdefgh", "stranger"]:
        issue_certificate(ca, key, name, ["127.0.0.1"], root)
    other = root / "other"
    other_ca, other_key = create_ca(other, "another network")
    issue_certificate(other_ca, other_key, "a", ["127.0.0.1"], other)
    return root


def tls_for(pki: Path, name: str, ca_dir: Path | None = None) -> TLSConfig:
    """The TLS paths of ``name``'s certificate under ``pki`` (or another CA directory)."""
    base = ca_dir or pki
    return TLSConfig(base / "ca.pem", base / f"{name}.pem", base / f"{name}.key")


@pytest.fixture
def build_peers(tmp_path: Path, pki: Path):  # type: ignore[no-untyped-def]
    """Peers for ``graph`` on free loopback ports, iris split among them."""

    def build(
        graph: nx.Graph,
        *,
        tls: bool = True,
        train: TrainConfig = IRIS,
        network: NetworkConfig | None = None,
        output: bool = False,
        resume: bool = False,
    ) -> list[Peer]:
        configs = loopback_configs(
            graph,
            data=lambda part, parts: DataConfig(dataset="iris", part=part, parts=parts),
            train=train,
            network=network or NetworkConfig(round_timeout_s=3.0, request_timeout_s=2.0),
            tls=lambda v: tls_for(pki, v) if tls else None,
            output=lambda v: tmp_path / "out" / v if output else None,
        )
        sockets = bind_loopback(len(configs))
        return [
            Peer(c, build_trainer(c.id, c.data, c.train), insecure=not tls, sock=s, resume=resume)
            for c, s in zip(wire_loopback(configs, sockets), sockets, strict=True)
        ]

    return build


@pytest.fixture
def train_config():  # type: ignore[no-untyped-def]
    """The iris training settings with some fields changed."""

    def make(rounds: int = 3, **changes: object) -> TrainConfig:
        return dataclasses.replace(IRIS, rounds=rounds, **changes)

    return make


@pytest.fixture
def tls_paths(pki: Path):  # type: ignore[no-untyped-def]
    return lambda name, ca_dir=None: tls_for(pki, name, ca_dir)
