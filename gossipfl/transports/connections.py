"""The peer's listening socket: its own accept loop, so every connection is bounded.

aiohttp's sites hand the socket to ``loop.create_server``, which has no cap on connections,
no header deadline, and a 60 s TLS handshake timeout. Here the peer accepts connections
itself and hands each one to aiohttp's protocol (``AppRunner.server``) only if there is room:

- at most ``max_connections`` open at once, and never more than the process's descriptor
  limit less a reserve for checkpoints, metrics, outgoing exchanges and the libraries, so
  an attacker's connections cannot make a checkpoint write fail with EMFILE;
- at most ``max_unauthenticated`` of them without a verified client certificate (still in
  the TLS handshake, or finished without one, as monitoring does), so a flood of anonymous
  connections leaves room for neighbours' established ones;
- the TLS handshake must finish within ``tls_handshake_timeout_s``, and each request's
  headers within ``header_timeout_s`` of the connection opening or of its first byte;
  aiohttp closes connections idle longer than ``keepalive_timeout_s``.

Over a cap, a connection is closed as soon as it is accepted. Running out of descriptors
while accepting (EMFILE) pauses accepting briefly instead of stopping the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from gossipfl.config import NetworkConfig

__all__ = ["FD_RESERVE", "Acceptor", "connection_cap"]

log = logging.getLogger("gossipfl.transports.connections")

# Descriptors kept free for everything but incoming connections: the checkpoint, its temporary
# file and directory, metrics, up to 64 outgoing connections, torch's and the TLS library's.
FD_RESERVE = 256
_ACCEPT_PAUSE_S = 0.1
_BACKLOG = 128
# A closing TLS connection reads (and discards) whatever the caller still sends until its
# close_notify arrives; this bounds that, so a refused upload is not drained for 30 s.
_TLS_SHUTDOWN_S = 1.0
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def connection_cap(configured: int) -> int:
    """``configured``, lowered so that the open-file limit keeps ``FD_RESERVE`` free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_RESERVE))


class _Connection(asyncio.Protocol):
    """Sits between asyncio's transport and aiohttp's protocol for one connection, to learn
    whether the caller presented a certificate and to enforce the header deadline."""

    def __init__(self, listener: Acceptor, sock: socket.socket, inner: asyncio.Protocol) -> None:
        self.listener = listener
        self.sock = sock
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.in_request = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if transport.get_extra_info("peercert"):
            self.listener.authenticated.add(self.sock)
        self.listener.by_transport[transport] = self
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.in_request and self._deadline is None:
            self._arm()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.listener.by_transport.pop(self.transport, None)
        self.listener.authenticated.discard(self.sock)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def request_started(self) -> None:
        self.in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self.in_request = False

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.listener.network.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.in_request and self.transport is not None:
            self.listener.refused("header_timeout")
            self.transport.abort()  # type: ignore[attr-defined]  # every stream transport has it


class Acceptor:
    """Accepts on ``sock`` and serves each admitted connection with ``runner``'s protocol."""

    def __init__(
        self,
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None,
        network: NetworkConfig,
        on_refusal: Callable[[str], None],
    ) -> None:
        self.sock = sock
        self.ssl_context = ssl_context
        self.network = network
        self.max_connections = connection_cap(network.max_connections)
        self.on_refusal = on_refusal
        self.open: set[socket.socket] = set()
        self.authenticated: set[socket.socket] = set()
        self.by_transport: dict[asyncio.BaseTransport | None, _Connection] = {}
        self._handshakes: set[asyncio.Task[Any]] = set()
        self._task: asyncio.Task[None] | None = None
        self._factory: Callable[[], asyncio.Protocol] | None = None
        if self.max_connections < network.max_connections:
            log.warning(
                "serving at most %d connections: the open-file limit leaves no room for %d",
                self.max_connections,
                network.max_connections,
            )

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self, factory: Callable[[], asyncio.Protocol]) -> None:
        """Accept connections and serve them with ``factory``'s protocols (aiohttp's
        ``AppRunner.server``)."""
        self._factory = factory
        self.sock.listen(_BACKLOG)
        self.sock.setblocking(False)
        self._task = asyncio.create_task(self._accept_forever(), name=f"accept-{self.port}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._handshakes):
            task.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)
        self.sock.close()

    def counts(self) -> tuple[int, int]:
        """(open connections, of which without a verified client certificate)."""
        self.open = {s for s in self.open if s.fileno() != -1}
        self.authenticated &= self.open
        unauthenticated = len(self.open) - len(self.authenticated) if self.ssl_context else 0
        return len(self.open), unauthenticated

    def refused(self, reason: str) -> None:
        self.on_refusal(reason)

    def connection_for(self, transport: asyncio.BaseTransport | None) -> _Connection | None:
        return self.by_transport.get(transport)

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    self.refused("out_of_descriptors")
                    await asyncio.sleep(_ACCEPT_PAUSE_S)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN):
                    continue
                raise
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        total, unauthenticated = self.counts()
        if total >= self.max_connections:
            self.refused("too_many_connections")
            conn.close()
            return
        if self.ssl_context is not None and unauthenticated >= self.network.max_unauthenticated:
            self.refused("too_many_unauthenticated")
            conn.close()
            return
        self.open.add(conn)
        task = asyncio.create_task(self._serve(conn))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        factory = self._factory
        assert factory is not None

        def protocol() -> asyncio.Protocol:
            return _Connection(self, conn, factory())

        handshake: Awaitable[Any] = loop.connect_accepted_socket(
            protocol,
            conn,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.network.tls_handshake_timeout_s if self.ssl_context else None,
            ssl_shutdown_timeout=_TLS_SHUTDOWN_S if self.ssl_context else None,
        )
        try:
            await handshake
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # A failed or abandoned handshake is the caller's problem; the socket is closed.
            log.debug("connection dropped before serving: %s", exc)
            conn.close()
