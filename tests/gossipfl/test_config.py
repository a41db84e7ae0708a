import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from gossipfl.cli import main
from gossipfl.config import (
    DataConfig,
    NeighborConfig,
    NetworkConfig,
    PeerConfig,
    RuntimeConfig,
    TLSConfig,
    TrainConfig,
    load_peer_config,
    write_peer_config,
)
from gossipfl.errors import ConfigError

GOOD = """
id = "p0"
listen = "127.0.0.1:7000"
[[neighbors]]
id = "p1"
url = "http://127.0.0.1:7001"
[data]
dataset = "iris"
part = 1
parts = 2
[train]
lr = 0.05
hidden = [16]
mode = "async"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "peer.toml"
    path.write_text(text)
    return path


def test_loads_values_and_defaults(tmp_path: Path) -> None:
    config = load_peer_config(write(tmp_path, GOOD))
    assert (config.id, config.host, config.port) == ("p0", "127.0.0.1", 7000)
    assert config.neighbors == (NeighborConfig("p1", "http://127.0.0.1:7001"),)
    assert (config.data.dataset, config.data.part, config.data.parts) == ("iris", 1, 2)
    assert config.train.lr == 0.05
    assert config.train.hidden == (16,)
    assert config.train.mode == "async"
    assert config.train.batch_size == 32  # default
    assert config.tls is None


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    config = PeerConfig(
        id="a",
        host="127.0.0.1",
        port=9000,
        neighbors=(NeighborConfig("b", "http://h:1"),),
        train=TrainConfig(rounds=3, hidden=(8, 4)),
        output_dir=tmp_path / "out",
    )
    back = load_peer_config(write_peer_config(config, tmp_path / "a.toml"))
    assert back.with_changes(source=None) == config


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("lr = 0.05", "lr = -1.0"), r"\[train\]\.lr: must be >= 0"),
        (("lr = 0.05", 'lr = "fast"'), r"\[train\]\.lr: expected a number, got 'fast'"),
        (("lr = 0.05", "lr = 0.05\nmomentum = 1.5"), r"\[train\]\.momentum: must be in \[0, 1\), got 1.5"),
        (("lr = 0.05", "lr = 0.05\nrounds = 0"), r"\[train\]\.rounds: must be >= 1, got 0"),
        (("part = 1", "part = 1\nalpha = nan"), r"\[data\]\.alpha: must be > 0, got nan"),
        (("[data]", "[runtime]\nthreads = -2\n[data]"), r"\[runtime\]\.threads: must be >= 0, got -2"),
        (("[data]", "[runtime]\ncores = 2\n[data]"), r"\[runtime\]\.cores: unknown key"),
        (("[data]", "[network]\nmax_body_mb = inf\n[data]"), r"\[network\]\.max_body_mb: must be > 0"),
        (('id = "p1"', 'id = "p 1"'), r"\[neighbors\[0\]\]\.id: node id 'p 1' must be"),
        (
            (
                'url = "http://127.0.0.1:7001"',
                'url = "http://127.0.0.1:7001"\n[[neighbors]]\nid = "p1"\nurl = "http://h:2"',
            ),
            r"\[neighbors\[1\]\]\.id: neighbour 'p1' listed twice",
        ),
        (('mode = "async"', 'mode = "turbo"'), r"\[train\]\.mode: must be one of sync, async, got 'turbo'"),
        (("part = 1", "part = 5"), r"\[data\]\.part: must be in \[0, 1\], got 5"),
        (('dataset = "iris"', 'dataset = "imagenet"'), r"\[data\]\.dataset: unknown dataset"),
        (('listen = "127.0.0.1:7000"', 'listen = "nowhere"'), r"listen: expected HOST:PORT"),
        (('url = "http://127.0.0.1:7001"', 'url = "ftp://x"'), r"\[neighbors\[0\]\]\.url"),
        (('id = "p1"', 'id = "p0"'), r"\[neighbors\[0\]\]\.id: a peer cannot be its own neighbour"),
        (("hidden = [16]", "hidden = [16, 0]"), r"\[train\]\.hidden"),
        (("lr = 0.05", "lr = 0.05\nlearning_rate = 1"), "learning_rate: unknown key"),
        (
            ("[data]", '[data]\n[tls]\nca = "nope.pem"\ncert = "c"\nkey = "k"'),
            r"\[tls\]\.ca: no such file",
        ),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*edit, 1))
    with pytest.raises(ConfigError, match=message) as info:
        load_peer_config(path)
    assert str(path) in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_peer_config(write(tmp_path, "id = "))
    with pytest.raises(ConfigError, match="cannot read"):
        load_peer_config(tmp_path / "absent.toml")


def test_runtime_threads_are_read_and_written(tmp_path: Path) -> None:
    config = load_peer_config(write(tmp_path, GOOD + "[runtime]\nthreads = 3\n"))
    assert config.runtime == RuntimeConfig(threads=3)
    back = load_peer_config(write_peer_config(config, tmp_path / "again.toml"))
    assert back.runtime.threads == 3
    assert load_peer_config(write(tmp_path, GOOD)).runtime.threads == 0  # automatic


@pytest.mark.parametrize(
    ("build", "field", "problem"),
    [
        (lambda: TrainConfig(rounds=0), "rounds", "must be >= 1, got 0"),
        (lambda: TrainConfig(lr=-1), "lr", "must be >= 0, got -1"),
        (lambda: TrainConfig(mode="bogus"), "mode", "must be one of sync, async, got 'bogus'"),  # type: ignore[arg-type]
        (lambda: TrainConfig(momentum=1.5), "momentum", "must be in [0, 1), got 1.5"),
        (lambda: TrainConfig(model="resnet"), "model", "must be one of logreg, mlp, cnn, got 'resnet'"),
        (lambda: TrainConfig(hidden=(64, 0)), "hidden", "expected a list of positive integers, got (64, 0)"),
        (lambda: TrainConfig(batch_size=True), "batch_size", "expected an integer, got True"),
        (lambda: TrainConfig(lr="fast"), "lr", "expected a number, got 'fast'"),  # type: ignore[arg-type]
        (lambda: TrainConfig(local_steps=0), "local_steps", "must be >= 1, got 0"),
        (lambda: DataConfig(dataset="imagenet"), "dataset", "unknown dataset 'imagenet'"),
        (
            lambda: DataConfig(partition="random"),
            "partition",
            "must be one of iid, dirichlet, shards, by-hospital",
        ),
        (lambda: DataConfig(part=2, parts=2), "part", "must be in [0, 1], got 2"),
        (lambda: DataConfig(parts=0), "parts", "must be >= 1, got 0"),
        (lambda: DataConfig(alpha=0.0), "alpha", "must be > 0, got 0.0"),
        (lambda: DataConfig(test_fraction=1.0), "test_fraction", "must be in [0.01, 0.9], got 1.0"),
        (
            lambda: DataConfig(partition="by-hospital", parts=4, hospitals=3),
            "hospitals",
            "by-hospital needs a hospital count dividing parts=4",
        ),
        (lambda: NetworkConfig(round_timeout_s=0), "round_timeout_s", "must be > 0, got 0"),
        (lambda: NetworkConfig(max_body_mb=float("inf")), "max_body_mb", "must be > 0, got inf"),
        (lambda: RuntimeConfig(threads=-1), "threads", "must be >= 0, got -1"),
        (lambda: TLSConfig(Path("/nonexistent/ca.pem"), Path("c"), Path("k")), "ca", "no such file"),
        (lambda: NeighborConfig("p1", "ftp://x"), "url", "expected http(s)://HOST:PORT, got 'ftp://x'"),
        (lambda: NeighborConfig("-p", "http://h:1"), "id", "node id '-p' must be"),
        (lambda: PeerConfig("a", "h", 70000, ()), "port", "must be in [0, 65535], got 70000"),
        (
            lambda: PeerConfig("a", "h", 1, (NeighborConfig("a", "http://h:2"),)),
            "neighbors[0].id",
            "a peer cannot be its own neighbour",
        ),
    ],
)
def test_each_dataclass_checks_its_own_fields(build: Callable[[], object], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: {problem}")


def test_checked_values_are_normalised() -> None:
    train = TrainConfig(lr=1, hidden=[8, 4])  # type: ignore[arg-type]
    assert isinstance(train.lr, float) and train.hidden == (8, 4)
    assert train == TrainConfig(lr=1.0, hidden=(8, 4))
    assert NeighborConfig("b", "http://h:1/").url == "http://h:1"
    with pytest.raises(ConfigError, match="momentum"):
        dataclasses.replace(train, momentum=-0.1)  # replace re-runs the checks


def test_a_file_written_from_flags_is_one_the_peer_accepts(tmp_path: Path) -> None:
    """Each check runs for Python, flags and files alike, so an export always loads."""
    net = tmp_path / "net"
    argv = f"topology ring --peers 3 --out {net} --momentum 0.99 --lr 0 --hidden 3 --rounds 1"
    assert main(argv.split()) == 0
    config = load_peer_config(net / "p1.toml")
    assert (config.train.momentum, config.train.lr, config.train.hidden) == (0.99, 0.0, (3,))
