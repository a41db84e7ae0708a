"""gossipfl: decentralized, peer-to-peer federated learning."""

from gossipfl.config import PeerConfig, load_peer_config
from gossipfl.errors import (
    ConfigError,
    GossipError,
    ModelMismatch,
    NeighbourError,
    NeighbourTimeout,
    PayloadTooLarge,
    Refused,
    WireError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GossipError",
    "ModelMismatch",
    "NeighbourError",
    "NeighbourTimeout",
    "PayloadTooLarge",
    "PeerConfig",
    "Refused",
    "WireError",
    "__version__",
    "load_peer_config",
]
