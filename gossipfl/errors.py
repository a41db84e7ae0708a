"""Every error gossipfl raises on purpose, in one tree.

::

    GossipError
    ├── ConfigError            (also ValueError)   a bad config file, flag or option
    ├── WireError              (also ValueError)   bytes that are not a valid model message
    │   ├── PayloadTooLarge                        over the size cap (HTTP 413)
    │   └── ModelMismatch                          wrong names, shapes, dtypes, non-finite (422)
    ├── Forbidden                                  sender unauthenticated (401) or not a neighbour (403)
    ├── RoundMismatch                              a valid message for a round not usable now (409)
    ├── NeighbourError         (also ConnectionError)  a neighbour could not be reached
    │   └── NeighbourTimeout   (also TimeoutError)     ... or did not answer in time
    └── Refused                                    a neighbour answered with an HTTP error

Transport code translates library exceptions (aiohttp, ssl, safetensors) into these at one
boundary, so nothing above the transport needs to know which library failed.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Forbidden",
    "GossipError",
    "ModelMismatch",
    "NeighbourError",
    "NeighbourTimeout",
    "PayloadTooLarge",
    "Refused",
    "RoundMismatch",
    "WireError",
]


class GossipError(Exception):
    """Base of every error gossipfl raises on purpose."""


class ConfigError(GossipError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range.

    A config dataclass that refuses one of its fields sets ``field`` (``"momentum"``) and
    ``problem``; whoever read the value from a file re-raises it under the name it has there
    (``peer.toml: [train].momentum: ...``).
    """

    def __init__(self, problem: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class WireError(GossipError, ValueError):
    """A message body is not a valid gossipfl model message (HTTP 400)."""

    status = 400


class PayloadTooLarge(WireError):
    """A message body is over the peer's size cap (HTTP 413)."""

    status = 413


class ModelMismatch(WireError):
    """A well-formed message whose tensors do not fit this model, or hold NaN/inf (HTTP 422)."""

    status = 422


class Forbidden(GossipError):
    """The request's sender may not gossip with this peer."""

    def __init__(self, detail: str, status: int = 403) -> None:
        super().__init__(detail)
        self.status = status


class RoundMismatch(GossipError):
    """A valid message this peer cannot use now: its round is too far ahead (``reason``
    ``too_early``: the sender retries) or already over (``stale``). HTTP 409."""

    status = 409

    def __init__(self, detail: str, *, early: bool) -> None:
        super().__init__(detail)
        self.reason = "too_early" if early else "stale"


class NeighbourError(GossipError, ConnectionError):
    """A neighbour could not be reached (refused, reset, TLS failure)."""

    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(f"{peer}: {detail}")
        self.peer = peer
        self.detail = detail


class NeighbourTimeout(NeighbourError, TimeoutError):
    """A neighbour did not answer within its deadline."""


class Refused(GossipError):
    """A neighbour answered with an HTTP error status; ``reason`` is its JSON ``error``."""

    def __init__(self, peer: str, status: int, reason: str) -> None:
        super().__init__(f"{peer} refused with HTTP {status}: {reason}")
        self.peer = peer
        self.status = status
        self.reason = reason
