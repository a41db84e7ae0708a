"""Peer configuration: one TOML file per peer, read once into frozen, validated dataclasses.

The schema (``gossipfl topology --out DIR`` writes one such file per node)::

    id = "p0"                              # this peer's id; also its certificate's name
    listen = "127.0.0.1:7000"              # host:port to serve on
    output_dir = "out/p0"                  # optional: checkpoint and metrics.jsonl go here

    [[neighbors]]                          # one table per neighbour
    id = "p1"
    url = "http://127.0.0.1:7001"          # https:// once `gossipfl certs` has run

    [data]
    dataset = "digits"                     # iris, digits, breast-cancer, mnist1d, synthetic,
                                           # npz:PATH or csv:PATH
    partition = "iid"                      # iid, dirichlet, shards, by-hospital
    part = 0                               # this peer's part, 0 <= part < parts
    parts = 8                              # how many parts the training set is split into
    seed = 0                               # the split's seed: equal on every peer
    alpha = 0.5                            # dirichlet and by-hospital skew
    hospitals = 0                          # by-hospital: parts are hospital-major
    label = "label"                        # csv: the label column
    test_fraction = 0.2                    # held-out share of the dataset

    [train]
    model = "mlp"                          # logreg, mlp, cnn
    hidden = [64, 64]                      # mlp widths
    rounds = 20
    local_steps = 1                        # SGD steps per round (ignored if local_epochs > 0)
    local_epochs = 0                       # passes over the local data per round
    lr = 0.1
    batch_size = 32
    momentum = 0.0
    mode = "sync"                          # sync (D-PSGD rounds) or async (gossip learning)
    seed = 0                               # model initialisation: equal seeds, equal start

    [network]                              # optional
    round_timeout_s = 10.0                 # sync: how long to wait for neighbours' models
    request_timeout_s = 5.0                # one HTTP exchange, reply included
    max_body_mb = 256.0                    # larger bodies are refused with 413
    tls_handshake_timeout_s = 5.0          # a TLS handshake that takes longer is dropped
    header_timeout_s = 10.0                # a request's headers must arrive within this
    keepalive_timeout_s = 15.0             # idle connections are closed after this
    body_timeout_s = 10.0                  # a body may take this long plus its size at...
    min_body_rate_kib_s = 64.0             # ...this rate; slower senders get 408
    max_connections = 256                  # open connections; lowered to fit `ulimit -n`
    max_unauthenticated = 64               # of which without a client certificate

The connection limits protect a peer from anyone who can reach its port: a connection over
a cap is closed as soon as it is accepted, and the open-file limit always keeps room for
checkpoints, metrics and outgoing exchanges (see ``gossipfl.connections``).

    [tls]                                  # optional; written by `gossipfl certs`
    ca = "certs/ca.pem"                    # relative paths are relative to this file
    cert = "certs/p0.pem"
    key = "certs/p0.key"

Unknown keys are errors, so a typo never silently falls back to a default. Every error
names the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from gossipfl.errors import ConfigError
from topologies.graph_io import validate_node_id

__all__ = [
    "DATASETS",
    "MODELS",
    "PARTITIONS",
    "DataConfig",
    "NeighborConfig",
    "NetworkConfig",
    "PeerConfig",
    "TLSConfig",
    "TrainConfig",
    "check_dataset",
    "load_peer_config",
    "parse_listen",
    "peer_config_toml",
    "write_peer_config",
]

DATASETS = ("iris", "digits", "breast-cancer", "mnist1d", "synthetic")
FILE_DATASETS = ("npz:", "csv:")
PARTITIONS = ("iid", "dirichlet", "shards", "by-hospital")
MODELS = ("logreg", "mlp", "cnn")
MODES = ("sync", "async")

T = TypeVar("T")


def check_dataset(name: str) -> str:
    """``name`` if it is a built-in dataset or ``npz:PATH``/``csv:PATH``; else ValueError."""
    if name in DATASETS or (name.startswith(FILE_DATASETS) and len(name) > 4):
        return name
    raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}, npz:PATH, csv:PATH")


def parse_listen(text: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); port 0 asks the system for a free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 0..65535, got {text!r}")
    return host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True)
class NeighborConfig:
    id: str
    url: str


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    partition: str = "iid"
    part: int = 0
    parts: int = 1
    seed: int = 0
    alpha: float = 0.5
    hospitals: int = 0
    label: str = "label"
    test_fraction: float = 0.2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    model: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    rounds: int = 20
    local_steps: int = 1
    local_epochs: int = 0
    lr: float = 0.1
    batch_size: int = 32
    momentum: float = 0.0
    mode: Literal["sync", "async"] = "sync"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    round_timeout_s: float = 10.0
    request_timeout_s: float = 5.0
    max_body_mb: float = 256.0
    tls_handshake_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 15.0
    body_timeout_s: float = 10.0
    min_body_rate_kib_s: float = 64.0
    max_connections: int = 256
    max_unauthenticated: int = 64

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclasses.dataclass(frozen=True)
class TLSConfig:
    ca: Path
    cert: Path
    key: Path


@dataclasses.dataclass(frozen=True)
class PeerConfig:
    id: str
    host: str
    port: int
    neighbors: tuple[NeighborConfig, ...]
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    network: NetworkConfig = NetworkConfig()
    tls: TLSConfig | None = None
    output_dir: Path | None = None
    source: Path | None = None  # the file this was read from, for messages

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    def with_changes(self, **changes: Any) -> PeerConfig:
        return dataclasses.replace(self, **changes)


class _Table:
    """Typed reads from one TOML table, each error naming file, table and key."""

    def __init__(self, data: Mapping[str, Any], where: str, table: str) -> None:
        self.data = data
        self.where = where
        self.table = table
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        name = f"[{self.table}].{key}" if self.table else key
        return ConfigError(f"{self.where}: {name}: {problem}")

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        self.used.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {kind.__name__}, got {value!r}")
        return value

    def number(self, key: str, kind: type[T], default: T, low: float, high: float = float("inf")) -> T:
        value = self.get(key, kind, default)
        if not low <= value <= high:  # type: ignore[operator]  # T is int or float here
            bound = f">= {low}" if high == float("inf") else f"in [{low}, {high}]"
            raise self.error(key, f"must be {bound}, got {value!r}")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (is it misspelt?)")


def _sub(root: _Table, key: str) -> _Table:
    value = root.get(key, dict, {})
    return _Table(value, root.where, key)


def _read_data(t: _Table) -> DataConfig:
    d = DataConfig()
    try:
        dataset = check_dataset(t.get("dataset", str, d.dataset))
    except ValueError as exc:
        raise t.error("dataset", str(exc)) from exc
    parts = t.number("parts", int, d.parts, 1)
    config = DataConfig(
        dataset=dataset,
        partition=t.choice("partition", PARTITIONS, d.partition),
        part=t.number("part", int, d.part, 0, parts - 1),
        parts=parts,
        seed=t.number("seed", int, d.seed, 0),
        alpha=t.number("alpha", float, d.alpha, 1e-6),
        hospitals=t.number("hospitals", int, d.hospitals, 0, parts),
        label=t.get("label", str, d.label),
        test_fraction=t.number("test_fraction", float, d.test_fraction, 0.01, 0.9),
    )
    if config.partition == "by-hospital" and (config.hospitals < 1 or parts % config.hospitals):
        raise t.error("hospitals", f"by-hospital needs a hospital count dividing parts={parts}")
    t.finish()
    return config


def _read_train(t: _Table) -> TrainConfig:
    d = TrainConfig()
    hidden = t.get("hidden", list, list(d.hidden))
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise t.error("hidden", f"expected a list of positive integers, got {hidden!r}")
    mode = t.choice("mode", MODES, d.mode)
    config = TrainConfig(
        model=t.choice("model", MODELS, d.model),
        hidden=tuple(hidden),
        rounds=t.number("rounds", int, d.rounds, 1),
        local_steps=t.number("local_steps", int, d.local_steps, 1),
        local_epochs=t.number("local_epochs", int, d.local_epochs, 0),
        lr=t.number("lr", float, d.lr, 0.0),
        batch_size=t.number("batch_size", int, d.batch_size, 1),
        momentum=t.number("momentum", float, d.momentum, 0.0, 0.999),
        mode="sync" if mode == "sync" else "async",
        seed=t.number("seed", int, d.seed, 0),
    )
    t.finish()
    return config


def _read_network(t: _Table) -> NetworkConfig:
    d = NetworkConfig()
    config = NetworkConfig(
        round_timeout_s=t.number("round_timeout_s", float, d.round_timeout_s, 0.01),
        request_timeout_s=t.number("request_timeout_s", float, d.request_timeout_s, 0.01),
        max_body_mb=t.number("max_body_mb", float, d.max_body_mb, 0.001),
        tls_handshake_timeout_s=t.number("tls_handshake_timeout_s", float, d.tls_handshake_timeout_s, 0.01),
        header_timeout_s=t.number("header_timeout_s", float, d.header_timeout_s, 0.01),
        keepalive_timeout_s=t.number("keepalive_timeout_s", float, d.keepalive_timeout_s, 0.01),
        body_timeout_s=t.number("body_timeout_s", float, d.body_timeout_s, 0.01),
        min_body_rate_kib_s=t.number("min_body_rate_kib_s", float, d.min_body_rate_kib_s, 0.001),
        max_connections=t.number("max_connections", int, d.max_connections, 1),
        max_unauthenticated=t.number("max_unauthenticated", int, d.max_unauthenticated, 1),
    )
    t.finish()
    return config


def _read_tls(t: _Table, base: Path) -> TLSConfig | None:
    if not t.data:
        return None
    paths = {key: base / t.get(key, str) for key in ("ca", "cert", "key")}
    for key, path in paths.items():
        if not path.is_file():
            raise t.error(key, f"no such file: {path}")
    t.finish()
    return TLSConfig(**paths)


def _read_neighbors(root: _Table, self_id: str) -> tuple[NeighborConfig, ...]:
    raw = root.get("neighbors", list, [])
    neighbors: list[NeighborConfig] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise root.error(f"neighbors[{i}]", "expected a table with id and url")
        t = _Table(item, root.where, f"neighbors[{i}]")
        try:
            nid = validate_node_id(t.get("id", str), root.where)
        except ValueError as exc:
            raise t.error("id", str(exc)) from exc
        url = t.get("url", str)
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        except ValueError:  # urlsplit refuses some hosts, and ports outside 0..65535
            scheme, host, port = "", None, None
        if scheme not in ("http", "https") or not host or port is None:
            raise t.error("url", f"expected http(s)://HOST:PORT, got {url!r}")
        if nid == self_id:
            raise t.error("id", "a peer cannot be its own neighbour")
        if any(n.id == nid for n in neighbors):
            raise t.error("id", f"neighbour {nid!r} listed twice")
        t.finish()
        neighbors.append(NeighborConfig(nid, url.rstrip("/")))
    return tuple(neighbors)


def load_peer_config(path: str | Path) -> PeerConfig:
    """Read and validate one peer's TOML; raises ``ConfigError`` naming file, key and problem."""
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from exc
    root = _Table(data, where, "")
    try:
        peer_id = validate_node_id(root.get("id", str), where)
    except ValueError as exc:
        raise root.error("id", str(exc)) from exc
    try:
        host, port = parse_listen(root.get("listen", str))
    except ValueError as exc:
        raise root.error("listen", str(exc)) from exc
    output = root.get("output_dir", str, "")
    config = PeerConfig(
        id=peer_id,
        host=host,
        port=port,
        neighbors=_read_neighbors(root, peer_id),
        data=_read_data(_sub(root, "data")),
        train=_read_train(_sub(root, "train")),
        network=_read_network(_sub(root, "network")),
        tls=_read_tls(_sub(root, "tls"), path.parent),
        output_dir=(path.parent / output) if output else None,
        source=path,
    )
    root.finish()
    return config


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def peer_config_toml(config: PeerConfig, base: Path) -> str:
    """The TOML text for ``config``; paths are written relative to ``base`` when inside it."""
    import tomli_w

    doc: dict[str, Any] = {"id": config.id, "listen": config.listen}
    if config.output_dir is not None:
        doc["output_dir"] = _relative(config.output_dir, base)
    doc["neighbors"] = [{"id": n.id, "url": n.url} for n in config.neighbors]
    doc["data"] = dataclasses.asdict(config.data)
    doc["train"] = {**dataclasses.asdict(config.train), "hidden": list(config.train.hidden)}
    doc["network"] = dataclasses.asdict(config.network)
    if config.tls is not None:
        doc["tls"] = {k: _relative(v, base) for k, v in dataclasses.asdict(config.tls).items()}
    return tomli_w.dumps(doc)


def write_peer_config(config: PeerConfig, path: str | Path) -> Path:
    """Write ``config`` to ``path`` (atomically: a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(peer_config_toml(config, path.parent), encoding="utf-8")
    tmp.replace(path)
    return path
