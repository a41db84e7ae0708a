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
    "Trainer": "gossipfl.learning.trainer",
    "TorchTrainer": "gossipfl.learning.trainer",
    "NumPyClientTrainer": "gossipfl.learning.trainer",
    "build_trainer": "gossipfl.learning.trainer",
    "HttpTransport": "gossipfl.transports.channels",
    "MemoryTransport": "gossipfl.transports.channels",
    "Transport": "gossipfl.transports.channels",
    "encode": "gossipfl.transports.wire",
    "decode": "gossipfl.transports.wire",
    "Message": "gossipfl.transports.wire",
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
