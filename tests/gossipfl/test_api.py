import subprocess
import sys

import gossipfl
from gossipfl.errors import (
    ConfigError,
    Forbidden,
    GossipError,
    ModelMismatch,
    NeighbourError,
    NeighbourTimeout,
    PayloadTooLarge,
    Refused,
    WireError,
)


def test_every_public_name_resolves() -> None:
    for name in gossipfl.__all__:
        assert getattr(gossipfl, name) is not None, name


def test_error_tree_is_rooted_and_maps_to_builtins() -> None:
    assert all(
        issubclass(e, GossipError)
        for e in (
            ConfigError,
            Forbidden,
            WireError,
            PayloadTooLarge,
            ModelMismatch,
            NeighbourError,
            NeighbourTimeout,
            Refused,
        )
    )
    assert issubclass(ConfigError, ValueError) and issubclass(WireError, ValueError)
    assert issubclass(NeighbourTimeout, TimeoutError) and issubclass(NeighbourError, ConnectionError)
    assert (WireError.status, PayloadTooLarge.status, ModelMismatch.status) == (400, 413, 422)


def test_import_is_lean() -> None:
    code = (
        "import sys, gossipfl, gossipfl.config; "
        "heavy = {'torch', 'aiohttp', 'networkx', 'scipy'} & set(sys.modules); assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
