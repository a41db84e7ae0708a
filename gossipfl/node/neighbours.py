"""What a peer knows about each neighbour: last round seen, failures, backoff."""

from __future__ import annotations

import dataclasses
import random
import time

from gossipfl.config import NeighborConfig

__all__ = ["NeighbourState", "NeighbourTable"]

_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 30.0


@dataclasses.dataclass
class NeighbourState:
    config: NeighborConfig
    last_round: int = -1
    last_seen: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    def status(self, now: float) -> dict[str, object]:
        return {
            "id": self.config.id,
            "url": self.config.url,
            "last_round": self.last_round,
            "last_seen_s_ago": None if self.last_seen is None else round(now - self.last_seen, 3),
            "failures": self.failures,
            "backoff_s": round(max(0.0, self.retry_at - now), 3),
            "last_error": self.last_error,
        }


class NeighbourTable:
    """Neighbours that fail are skipped until their backoff (doubling to 30 s) expires."""

    def __init__(self, neighbours: tuple[NeighborConfig, ...]) -> None:
        self.states = {n.id: NeighbourState(n) for n in neighbours}

    def __contains__(self, peer: str) -> bool:
        return peer in self.states

    def __len__(self) -> int:
        return len(self.states)

    def hears_from(self, peer: str) -> bool:
        """Whether ``peer`` may send this peer its model (a neighbour, not an out-only link)."""
        state = self.states.get(peer)
        return state is not None and state.config.hears_from

    def reachable(self, now: float | None = None) -> list[NeighborConfig]:
        now = time.monotonic() if now is None else now
        return [s.config for s in self.states.values() if s.retry_at <= now]

    def pick(self, rng: random.Random) -> NeighborConfig | None:
        options = [n for n in self.reachable() if n.sends_to]
        return rng.choice(options) if options else None

    def heard_from(self, peer: str, round_: int) -> None:
        state = self.states[peer]
        state.last_round = max(state.last_round, round_)
        state.last_seen = time.monotonic()

    def succeeded(self, peer: str) -> None:
        state = self.states[peer]
        state.failures = 0
        state.retry_at = 0.0
        state.last_error = ""

    def failed(self, peer: str, error: str) -> None:
        state = self.states[peer]
        state.failures += 1
        delay = min(_BACKOFF_MAX_S, _BACKOFF_START_S * 2 ** (state.failures - 1))
        state.retry_at = time.monotonic() + delay
        state.last_error = error

    def status(self) -> list[dict[str, object]]:
        now = time.monotonic()
        return [s.status(now) for s in self.states.values()]
