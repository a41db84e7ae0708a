"""Peer configuration: one TOML file per peer, read once into frozen, validated dataclasses.

The schema (``gossipfl topology --out DIR`` writes one such file per node)::

    id = "p0"                              # this peer's id; also its certificate's name
    listen = "127.0.0.1:7000"              # host:port to serve on
    output_dir = "out/p0"                  # optional: checkpoint and metrics.jsonl go here

    [[neighbors]]                          # one table per neighbour
    id = "p1"
    url = "http://127.0.0.1:7001"          # https:// once `gossipfl certs` has run
    direction = "both"                     # both; out (only send to it) or in (only hear from
                                           # it): directed links, for push-sum

    [data]
    dataset = "digits"                     # gossipfl.learning.datasets.DATASETS (iris, digits,
                                           # breast-cancer, mnist1d, synthetic), npz:PATH, csv:PATH
    partition = "iid"                      # gossipfl.learning.partition.PARTITIONS: iid, dirichlet,
                                           # shards, by-hospital
    part = 0                               # this peer's part, 0 <= part < parts
    parts = 8                              # how many parts the training set is split into
    seed = 0                               # the split's seed: equal on every peer
    alpha = 0.5                            # dirichlet and by-hospital skew
    hospitals = 0                          # by-hospital: parts are hospital-major
    label = "label"                        # csv: the label column
    test_fraction = 0.2                    # held-out share of the dataset

    [train]
    model = "mlp"                          # gossipfl.learning.models.MODELS: logreg, mlp, cnn
    hidden = [64, 64]                      # mlp widths
    rounds = 20
    local_steps = 1                        # SGD steps per round (ignored if local_epochs > 0)
    local_epochs = 0                       # passes over the local data per round
    lr = 0.1
    batch_size = 32
    momentum = 0.0                         # 0 <= momentum < 1
    mode = "sync"                          # sync (D-PSGD rounds) or async (gossip learning)
    seed = 0                               # model initialisation: equal seeds, equal start

    [gossip]                               # optional: how models are mixed
    algorithm = "dpsgd"                    # dpsgd or pushsum (sync mode); gossip (async mode)
    mixing = "metropolis"                  # dpsgd weights: metropolis or uniform (regular graphs)
    lazy = false                           # halve every neighbour's weight: (I + W) / 2
    rule = "mean"                          # combine rule (gossipfl.rules)
    transform = "identity"                 # what is sent (gossipfl.outgoing)

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
checkpoints, metrics and outgoing exchanges (see ``gossipfl.transports.connections``).

    [runtime]                              # optional
    threads = 0                            # torch's compute threads; 0: automatic, which is 1
                                           # because peers often share a machine's cores

    [tls]                                  # optional; written by `gossipfl certs`
    ca = "certs/ca.pem"                    # relative paths are relative to this file
    cert = "certs/p0.pem"
    key = "certs/p0.key"

Unknown keys are errors, so a typo never silently falls back to a default. Each dataclass
checks its own fields, so a value built in Python, given as a flag or read from here passes
the same checks; an error from a file names the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import networkx as nx

from gossipfl import checks
from gossipfl.errors import ConfigError
from gossipfl.learning.datasets import check_dataset
from gossipfl.learning.models import MODELS
from gossipfl.learning.partition import PARTITIONS

__all__ = [
    "MODES",
    "DataConfig",
    "GossipConfig",
    "NeighborConfig",
    "NetworkConfig",
    "PeerConfig",
    "RuntimeConfig",
    "TLSConfig",
    "TrainConfig",
    "links",
    "load_peer_config",
    "parse_listen",
    "peer_config_toml",
    "write_peer_config",
]

# How a peer runs its rounds (gossipfl.node.peer implements both); TrainConfig.mode's values.
MODES = ("sync", "async")

T = TypeVar("T")


def parse_listen(text: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); port 0 asks the system for a free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 0..65535, got {text!r}")
    return host.strip("[]"), int(port)


Direction = Literal["both", "out", "in"]
DIRECTIONS: tuple[Direction, ...] = ("both", "out", "in")


def _node_id(field: str, value: object) -> str:
    # Imported here: the topologies package loads networkx and scipy.
    from topologies.graph_io import validate_node_id

    try:
        return validate_node_id(checks.text(field, value), "id")
    except ValueError as exc:
        raise ConfigError(str(exc).removeprefix("id: "), field) from exc


def _set(config: object, field: str, value: object) -> None:
    """Store a normalised value (an int given for a float, a list for a tuple) in a frozen dataclass."""
    object.__setattr__(config, field, value)


@dataclasses.dataclass(frozen=True)
class NeighborConfig:
    id: str
    url: str
    direction: Direction = "both"

    def __post_init__(self) -> None:
        _node_id("id", self.id)
        try:
            parts = urlsplit(checks.text("url", self.url))
            scheme, host, port = parts.scheme, parts.hostname, parts.port
        except ValueError:  # urlsplit refuses some hosts, and ports outside 0..65535
            scheme, host, port = "", None, None
        if scheme not in ("http", "https") or not host or port is None:
            raise ConfigError(f"expected http(s)://HOST:PORT, got {self.url!r}", "url")
        _set(self, "url", self.url.rstrip("/"))
        checks.one_of("direction", self.direction, DIRECTIONS)

    @property
    def sends_to(self) -> bool:
        """This peer sends its model to the neighbour."""
        return self.direction != "in"

    @property
    def hears_from(self) -> bool:
        """This peer accepts the neighbour's model."""
        return self.direction != "out"


@dataclasses.dataclass(frozen=True)
class GossipConfig:
    algorithm: str = "dpsgd"
    mixing: Literal["metropolis", "uniform"] = "metropolis"
    lazy: bool = False
    rule: str = "mean"
    transform: str = "identity"

    def __post_init__(self) -> None:
        from gossipfl.algorithms import ALGORITHMS, MIXINGS
        from gossipfl.outgoing import TRANSFORMS
        from gossipfl.rules import RULES

        checks.one_of("algorithm", self.algorithm, tuple(ALGORITHMS))
        checks.one_of("mixing", self.mixing, MIXINGS)
        if not isinstance(self.lazy, bool):
            raise ConfigError(f"expected true or false, got {self.lazy!r}", "lazy")
        checks.one_of("rule", self.rule, tuple(RULES))
        checks.one_of("transform", self.transform, tuple(TRANSFORMS))


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

    def __post_init__(self) -> None:
        check_dataset(self.dataset)
        checks.one_of("partition", self.partition, PARTITIONS)
        parts = checks.integer("parts", self.parts, 1)
        checks.integer("part", self.part, 0, parts - 1)
        checks.integer("seed", self.seed, 0)
        _set(self, "alpha", checks.real("alpha", self.alpha, 0.0, low_open=True))
        hospitals = checks.integer("hospitals", self.hospitals, 0, parts)
        if self.partition == "by-hospital" and (hospitals < 1 or parts % hospitals):
            raise ConfigError(f"by-hospital needs a hospital count dividing parts={parts}", "hospitals")
        checks.text("label", self.label)
        _set(self, "test_fraction", checks.real("test_fraction", self.test_fraction, 0.01, 0.9))


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

    def __post_init__(self) -> None:
        checks.one_of("model", self.model, MODELS)
        widths = self.hidden
        if not isinstance(widths, tuple | list) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in widths
        ):
            raise ConfigError(f"expected a list of positive integers, got {widths!r}", "hidden")
        _set(self, "hidden", tuple(widths))
        checks.integer("rounds", self.rounds, 1)
        checks.integer("local_steps", self.local_steps, 1)
        checks.integer("local_epochs", self.local_epochs, 0)
        _set(self, "lr", checks.real("lr", self.lr, 0.0))
        checks.integer("batch_size", self.batch_size, 1)
        _set(self, "momentum", checks.real("momentum", self.momentum, 0.0, 1.0, high_open=True))
        checks.one_of("mode", self.mode, MODES)
        checks.integer("seed", self.seed, 0)


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

    def __post_init__(self) -> None:
        for field in (
            "round_timeout_s",
            "request_timeout_s",
            "max_body_mb",
            "tls_handshake_timeout_s",
            "header_timeout_s",
            "keepalive_timeout_s",
            "body_timeout_s",
            "min_body_rate_kib_s",
        ):
            _set(self, field, checks.real(field, getattr(self, field), 0.0, low_open=True))
        checks.integer("max_connections", self.max_connections, 1)
        checks.integer("max_unauthenticated", self.max_unauthenticated, 1)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    threads: int = 0  # torch's compute threads; 0: the command's automatic choice

    def __post_init__(self) -> None:
        checks.integer("threads", self.threads, 0)


@dataclasses.dataclass(frozen=True)
class TLSConfig:
    ca: Path
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        for field in ("ca", "cert", "key"):
            path = getattr(self, field)
            if not isinstance(path, Path):
                raise ConfigError(f"expected a path, got {path!r}", field)
            if not path.is_file():
                raise ConfigError(f"no such file: {path}", field)


@dataclasses.dataclass(frozen=True)
class PeerConfig:
    id: str
    host: str
    port: int
    neighbors: tuple[NeighborConfig, ...]
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    network: NetworkConfig = NetworkConfig()
    gossip: GossipConfig = GossipConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    tls: TLSConfig | None = None
    output_dir: Path | None = None
    source: Path | None = None  # the file this was read from, for messages

    def __post_init__(self) -> None:
        _node_id("id", self.id)
        checks.text("host", self.host)
        checks.integer("port", self.port, 0, 65535)
        if not isinstance(self.neighbors, tuple | list):
            raise ConfigError(f"expected a list of neighbours, got {self.neighbors!r}", "neighbors")
        _set(self, "neighbors", tuple(self.neighbors))
        seen: set[str] = set()
        for i, n in enumerate(self.neighbors):
            if not isinstance(n, NeighborConfig):
                raise ConfigError(f"expected a NeighborConfig, got {n!r}", f"neighbors[{i}]")
            if n.id == self.id:
                raise ConfigError("a peer cannot be its own neighbour", f"neighbors[{i}].id")
            if n.id in seen:
                raise ConfigError(f"neighbour {n.id!r} listed twice", f"neighbors[{i}].id")
            seen.add(n.id)
        for field, kind in (
            ("data", DataConfig),
            ("train", TrainConfig),
            ("network", NetworkConfig),
            ("gossip", GossipConfig),
            ("runtime", RuntimeConfig),
        ):
            if not isinstance(getattr(self, field), kind):
                raise ConfigError(f"expected a {kind.__name__}, got {getattr(self, field)!r}", field)
        if self.tls is not None and not isinstance(self.tls, TLSConfig):
            raise ConfigError(f"expected a TLSConfig or None, got {self.tls!r}", "tls")
        if self.output_dir is not None and not isinstance(self.output_dir, Path):
            raise ConfigError(f"expected a path or None, got {self.output_dir!r}", "output_dir")
        # Async mode is pairwise gossip: the default dpsgd is read as "not chosen" there.
        if self.train.mode == "async" and self.gossip.algorithm != "gossip":
            if self.gossip.algorithm != "dpsgd":
                raise ConfigError(f"{self.gossip.algorithm!r} needs [train].mode = sync", "gossip.algorithm")
            _set(self, "gossip", dataclasses.replace(self.gossip, algorithm="gossip"))

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"
    def with_changes(self, **changes: Any) -> PeerConfig:
        return dataclasses.replace(self, **changes)


class _Table:
    """Raw values of one TOML table, and errors naming file, table and key."""

    def __init__(self, data: Mapping[str, Any], where: str, table: str) -> None:
        self.data = data
        self.where = where
        self.table = table
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        table, dot, rest = key.partition(".")
        if self.table:
            name = f"[{self.table}].{key}" if key else f"[{self.table}]"
        else:
            name = f"[{table}].{rest}" if dot else key
        return ConfigError(f"{self.where}: {name + ': ' if name else ''}{problem}")

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        """The value of ``key``, which must be a ``kind`` (for a value the reader itself needs)."""
        self.used.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing")
            return default
        value = self.data[key]
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind.__name__}, got {value!r}")
        return value

    def build(self, cls: type[T], **values: Any) -> T:
        """``cls(**values)``; its own checks' errors re-raised under this table's names."""
        try:
            return cls(**values)
        except ConfigError as exc:
            if exc.field is None:
                raise self.error("", exc.problem) from exc
            raise self.error(exc.field, exc.problem) from exc

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown key (is it misspelt?)")


def _sub(root: _Table, key: str) -> _Table:
    value = root.get(key, dict, {})
    return _Table(value, root.where, key)


def _read(t: _Table, cls: type[T]) -> T:
    """A dataclass whose fields all have defaults, from a table of the same keys."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # T is a dataclass
    values = {name: t.data[name] for name in names if name in t.data}
    t.used.update(values)
    config = t.build(cls, **values)
    t.finish()
    return config


def _read_tls(t: _Table, base: Path) -> TLSConfig | None:
    if not t.data:
        return None
    paths = {key: base / t.get(key, str) for key in ("ca", "cert", "key")}
    config = t.build(TLSConfig, **paths)
    t.finish()
    return config


def _read_neighbors(root: _Table) -> tuple[NeighborConfig, ...]:
    raw = root.get("neighbors", list, [])
    neighbors: list[NeighborConfig] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise root.error(f"neighbors[{i}]", "expected a table with id and url")
        t = _Table(item, root.where, f"neighbors[{i}]")
        values = {"id": t.get("id", object), "url": t.get("url", object)}
        if "direction" in t.data:
            values["direction"] = t.get("direction", object)
        neighbors.append(t.build(NeighborConfig, **values))
        t.finish()
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
    peer_id = root.get("id", object)
    try:
        host, port = parse_listen(root.get("listen", str))
    except ValueError as exc:
        raise root.error("listen", str(exc)) from exc
    output = root.get("output_dir", str, "")
    values = {
        "id": peer_id,
        "host": host,
        "port": port,
        "neighbors": _read_neighbors(root),
        "data": _read(_sub(root, "data"), DataConfig),
        "train": _read(_sub(root, "train"), TrainConfig),
        "network": _read(_sub(root, "network"), NetworkConfig),
        "gossip": _read(_sub(root, "gossip"), GossipConfig),
        "runtime": _read(_sub(root, "runtime"), RuntimeConfig),
        "tls": _read_tls(_sub(root, "tls"), path.parent),
        "output_dir": (path.parent / output) if output else None,
        "source": path,
    }
    root.finish()
    return root.build(PeerConfig, **values)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def links(graph: nx.Graph, node: str) -> tuple[NeighborConfig, ...]:
    """``node``'s neighbours in ``graph``, URLs still unset (callers fill them in); on a
    digraph, out-edges are sent along and in-edges heard from."""
    if not graph.is_directed():
        return tuple(NeighborConfig(str(n), "http://unset:1") for n in graph.neighbors(node))
    out, into = set(graph.successors(node)), set(graph.predecessors(node))
    ordered = list(graph.successors(node)) + [n for n in graph.predecessors(node) if n not in out]
    direction: dict[bool, Direction] = {True: "out", False: "in"}
    return tuple(
        NeighborConfig(str(n), "http://unset:1", "both" if n in out and n in into else direction[n in out])
        for n in ordered
    )


def peer_config_toml(config: PeerConfig, base: Path) -> str:
    """The TOML text for ``config``; paths are written relative to ``base`` when inside it."""
    import tomli_w

    doc: dict[str, Any] = {"id": config.id, "listen": config.listen}
    if config.output_dir is not None:
        doc["output_dir"] = _relative(config.output_dir, base)
    doc["neighbors"] = [
        {"id": n.id, "url": n.url, **({} if n.direction == "both" else {"direction": n.direction})}
        for n in config.neighbors
    ]
    doc["data"] = dataclasses.asdict(config.data)
    doc["train"] = {**dataclasses.asdict(config.train), "hidden": list(config.train.hidden)}
    doc["network"] = dataclasses.asdict(config.network)
    doc["gossip"] = dataclasses.asdict(config.gossip)
    doc["runtime"] = dataclasses.asdict(config.runtime)
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
