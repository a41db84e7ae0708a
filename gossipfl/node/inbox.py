"""Models that arrived for upcoming synchronous rounds, and waiting for them."""

from __future__ import annotations

import asyncio
import time

from gossipfl.errors import RoundMismatch
from gossipfl.transports.wire import Message

__all__ = ["ROUNDS_AHEAD", "Inbox"]

# A neighbour may run at most this many rounds ahead: only rounds this peer can still use are
# kept, so a buggy or hostile neighbour cannot park unbounded models here.
ROUNDS_AHEAD = 2


class Inbox:
    def __init__(self) -> None:
        self._rounds: dict[int, dict[str, Message]] = {}
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        return len(self._rounds)

    def offer(self, message: Message, current: int) -> None:
        """Keep ``message`` for its round; ``RoundMismatch`` unless this peer (at round
        ``current``) will still use it and it is at most ``ROUNDS_AHEAD`` rounds ahead."""
        if message.round < current:
            raise RoundMismatch(f"round {message.round} is over (this peer is at {current})", early=False)
        if message.round > current + ROUNDS_AHEAD:
            raise RoundMismatch(
                f"round {message.round} is more than {ROUNDS_AHEAD} ahead of this peer's {current}; retry",
                early=True,
            )
        self._rounds.setdefault(message.round, {})[message.sender] = message
        self._arrived.set()

    async def wait(self, round_: int, expected: set[str], timeout_s: float) -> set[str]:
        """Wait until every peer in ``expected`` delivered round ``round_`` or the timeout
        passed; returns those still missing."""
        deadline = time.monotonic() + timeout_s
        while missing := expected - self._rounds.get(round_, {}).keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return missing
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue
        return set()

    def take(self, round_: int) -> dict[str, Message]:
        """Round ``round_``'s messages by sender; older rounds are dropped."""
        received = self._rounds.pop(round_, {})
        for stale in [r for r in self._rounds if r < round_]:
            del self._rounds[stale]
        return received
