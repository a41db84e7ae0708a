"""How peers reach each other: a client interface (``Transport``) and a server interface
(``Listener``), each with an HTTP implementation and an in-memory twin.

``HttpTransport`` speaks to real peers over HTTP(S) with aiohttp; ``MemoryTransport`` hands
bytes straight to peers in the same process, for unit tests of the gossip logic;
``MemoryListener`` is the matching server half, so the whole protocol runs without sockets.
The HTTP listener is ``gossipfl.transports.server.HttpListener``. Library
errors are translated here, once, into gossipfl's own (``NeighbourError``,
``NeighbourTimeout``, ``Refused``); nothing above this module imports aiohttp to handle a
failure.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import aiohttp

from gossipfl.config import NeighborConfig
from gossipfl.errors import GossipError, NeighbourError, NeighbourTimeout, Refused

if TYPE_CHECKING:
    from gossipfl.node.peer import Peer

__all__ = ["HttpTransport", "Listener", "MemoryListener", "MemoryTransport", "Transport"]

# An error reply is a short JSON object; more than this is not read at all.
_MAX_ERROR_BODY = 4096


class Transport(Protocol):
    async def send(
        self, neighbour: NeighborConfig, body: bytes | bytearray, *, reply: bool, limit_s: float
    ) -> bytes | bytearray | None:
        """POST ``body`` to the neighbour's /gossip; its weights if ``reply``, else None."""
        ...

    async def close(self) -> None: ...


class Listener(Protocol):
    async def start(self, peer: Peer) -> int:
        """Serve ``peer``'s API; returns the port it listens on (0 without sockets)."""
        ...

    async def stop(self) -> None: ...


class HttpTransport:
    """aiohttp client; with ``ssl_context`` it presents this peer's certificate and checks
    that the server's certificate names the neighbour id it expects.

    Every reply, success or error, is read under a size cap (the model cap, or 4 KiB for an
    error) and within the exchange's deadline, and never inflated: a hostile or broken
    neighbour costs a bounded amount of memory and time."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, max_body_bytes: int = 1 << 28) -> None:
        self.ssl_context = ssl_context
        self.max_body_bytes = max_body_bytes
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context or False, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def send(
        self, neighbour: NeighborConfig, body: bytes | bytearray, *, reply: bool, limit_s: float
    ) -> bytes | None:
        url = f"{neighbour.url}/gossip?reply={int(reply)}"
        try:
            async with self._client().post(
                url,
                data=body,
                timeout=aiohttp.ClientTimeout(total=limit_s),
                headers={"Content-Type": "application/octet-stream"},
                # TLS checks that the server's certificate names the neighbour we meant.
                server_hostname=neighbour.id if self.ssl_context is not None else None,
            ) as response:
                if response.status >= 400:
                    # At most the first few KiB, then the connection is dropped unread.
                    detail = await response.content.read(_MAX_ERROR_BODY)
                    response.close()
                    raise Refused(neighbour.id, response.status, _reason(detail))
                if not reply:
                    return None
                if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                    raise NeighbourError(neighbour.id, "compressed reply (a model is sent uncompressed)")
                return await self._read_capped(neighbour, response)
        except TimeoutError as exc:
            raise NeighbourTimeout(neighbour.id, f"no answer within {limit_s:.1f}s") from exc
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise NeighbourError(neighbour.id, f"{type(exc).__name__}: {exc}") from exc

    async def _read_capped(self, neighbour: NeighborConfig, response: aiohttp.ClientResponse) -> bytes:
        """The whole reply body, refusing (without buffering) anything over the cap."""
        if (response.content_length or 0) > self.max_body_bytes:
            raise NeighbourError(neighbour.id, "reply larger than the size cap")
        chunks, total = [], 0
        async for chunk in response.content.iter_chunked(1 << 20):
            total += len(chunk)
            if total > self.max_body_bytes:
                raise NeighbourError(neighbour.id, "reply larger than the size cap")
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body)
        return f"{data['error']}: {data.get('detail', '')}"
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


Handler = Callable[[str, bytes, bool], Awaitable[bytes | bytearray | None]]


class MemoryTransport:
    """Delivers to handlers registered by peer id; ``sender`` stands in for a certificate."""

    def __init__(self, sender: str, registry: dict[str, Handler]) -> None:
        self.sender = sender
        self.registry = registry

    async def send(
        self, neighbour: NeighborConfig, body: bytes | bytearray, *, reply: bool, limit_s: float
    ) -> bytes | bytearray | None:
        handler = self.registry.get(neighbour.id)
        if handler is None:
            raise NeighbourError(neighbour.id, "not reachable")
        try:
            return await asyncio.wait_for(handler(self.sender, bytes(body), reply), limit_s)
        except TimeoutError as exc:
            raise NeighbourTimeout(neighbour.id, f"no answer within {limit_s:.1f}s") from exc
        except GossipError as exc:
            status = getattr(exc, "status", 500)
            reason = getattr(exc, "reason", None)
            raise Refused(neighbour.id, status, f"{reason}: {exc}" if reason else str(exc)) from exc

    async def close(self) -> None:
        return None


class MemoryListener:
    """Serves a peer's /gossip to ``MemoryTransport`` senders sharing ``registry``."""

    def __init__(self, registry: dict[str, Handler]) -> None:
        self.registry = registry
        self._id: str | None = None

    async def start(self, peer: Peer) -> int:
        self._id = peer.id
        self.registry[peer.id] = peer.receive
        return 0

    async def stop(self) -> None:
        if self._id is not None:
            self.registry.pop(self._id, None)
