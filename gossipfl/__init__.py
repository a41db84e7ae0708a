"""gossipfl: decentralized, peer-to-peer federated learning.

The public API. Names that need torch or aiohttp are imported on first use, so that
``import gossipfl`` (and ``gossipfl topology``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from gossipfl.config import PeerConfig, load_peer_config
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

__version__ = "0.1.0"

_LAZY = {
    "Peer": "gossipfl.node.peer",
    "Trainer": "gossipfl.trainer",
    "TorchTrainer": "gossipfl.trainer",
    "NumPyClientTrainer": "gossipfl.trainer",
    "build_trainer": "gossipfl.trainer",
    "HttpTransport": "gossipfl.transport",
    "MemoryTransport": "gossipfl.transport",
    "Transport": "gossipfl.transport",
    "encode": "gossipfl.wire",
    "decode": "gossipfl.wire",
    "Message": "gossipfl.wire",
}

__all__ = [
    "ConfigError",
    "Forbidden",
    "GossipError",
    "HttpTransport",
    "MemoryTransport",
    "Message",
    "ModelMismatch",
    "NeighbourError",
    "NeighbourTimeout",
    "NumPyClientTrainer",
    "PayloadTooLarge",
    "Peer",
    "PeerConfig",
    "Refused",
    "TorchTrainer",
    "Trainer",
    "Transport",
    "WireError",
    "__version__",
    "build_trainer",
    "decode",
    "encode",
    "load_peer_config",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gossipfl' has no attribute {name!r}")
