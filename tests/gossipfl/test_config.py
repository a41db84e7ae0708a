from pathlib import Path

import pytest

from gossipfl.config import (
    NeighborConfig,
    PeerConfig,
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
        (("lr = 0.05", 'lr = "fast"'), r"\[train\]\.lr: expected float"),
        (('mode = "async"', 'mode = "turbo"'), r"\[train\]\.mode: must be one of sync, async"),
        (("part = 1", "part = 5"), r"\[data\]\.part: must be in \[0, 1\]"),
        (('dataset = "iris"', 'dataset = "imagenet"'), r"\[data\]\.dataset: unknown dataset"),
        (('listen = "127.0.0.1:7000"', 'listen = "nowhere"'), r"listen: expected HOST:PORT"),
        (('url = "http://127.0.0.1:7001"', 'url = "ftp://x"'), r"\[neighbors\[0\]\]\.url"),
        (('id = "p1"', 'id = "p0"'), "its own neighbour"),
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
