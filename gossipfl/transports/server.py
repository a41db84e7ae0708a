"""The peer's HTTP API (aiohttp): /health, /status, /gossip, /model, /metrics.

Errors are JSON ``{"error": ..., "detail": ...}`` with the status the failure class
carries; every rejection is counted by reason in /metrics.

/gossip costs a caller nothing it has not earned: the certificate is checked from the
headers alone (401 without one, 403 for a non-neighbour), compressed bodies are refused
(415) without being inflated, and the body is read with the size cap and a minimum rate
enforced while it streams (413, 408), chunked or not. A refusal before the body is read
closes the connection, so the rest of the body is never read either.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from gossipfl.errors import Forbidden, PayloadTooLarge, RoundMismatch, WireError
from gossipfl.node.jsonl import clean
from gossipfl.transports.connections import Acceptor
from gossipfl.transports.tls import peer_identity

if TYPE_CHECKING:
    from gossipfl.config import NetworkConfig
    from gossipfl.node.peer import Peer

__all__ = ["HttpListener", "Serving", "make_app", "serve"]

log = logging.getLogger("gossipfl.transports.server")

PEER: web.AppKey[Peer] = web.AppKey("peer")
LISTENER: web.AppKey[Acceptor] = web.AppKey("listener")
_REASONS = {
    400: "malformed",
    401: "unauthenticated",
    403: "forbidden",
    408: "too_slow",
    413: "too_large",
    415: "unsupported_encoding",
    422: "invalid_model",
    503: "busy",
}
# How long aiohttp may keep reading (and discarding) a body a handler did not read.
_LINGER_S = 1.0
# How long stopping a peer waits for requests in progress.
_SHUTDOWN_S = 2.0


def _reject(request: web.Request, status: int, detail: str, reason: str | None = None) -> web.Response:
    reason = reason or _REASONS.get(status, "error")
    request.app[PEER].metrics.rejected[reason] += 1
    return web.json_response({"error": reason, "detail": detail}, status=status)


def _refuse(request: web.Request, status: int, detail: str) -> web.Response:
    """A refusal sent before the body was read: the connection closes after it, so aiohttp
    reads nothing more from this caller."""
    response = _reject(request, status, detail)
    response.force_close()
    return response


def _identity(request: web.Request) -> str | None:
    transport = request.transport
    if transport is None:
        return None
    return peer_identity(transport.get_extra_info("peercert"), request.app[PEER].neighbours.states)


def _authorize(request: web.Request) -> web.Response | None:
    """None if the caller may gossip with or read this peer, else the refusal to send."""
    try:
        request.app[PEER].authorize(_identity(request))
    except Forbidden as exc:
        return _refuse(request, exc.status, str(exc))
    return None


class _TooSlow(Exception):
    pass


async def _read_body(request: web.Request, cap: int, network: NetworkConfig) -> bytearray:
    """The body, refusing it as soon as it passes ``cap`` (``PayloadTooLarge``) or falls
    behind ``body_timeout_s`` plus its size at ``min_body_rate_kib_s`` (``_TooSlow``)."""
    loop = asyncio.get_running_loop()
    rate = network.min_body_rate_kib_s * 1024
    started = loop.time()
    body = bytearray()
    try:
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(started + network.body_timeout_s + len(body) / rate)
                chunk = await request.content.readany()
                if not chunk:
                    return body
                if len(body) + len(chunk) > cap:
                    raise PayloadTooLarge(f"body exceeds the cap of {cap} bytes")
                body += chunk
    except TimeoutError as exc:
        raise _TooSlow(
            f"{len(body)} bytes in {loop.time() - started:.1f}s; the body must arrive within "
            f"{network.body_timeout_s}s plus its size at {network.min_body_rate_kib_s} KiB/s"
        ) from exc


async def health(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    return web.json_response({"status": "ok", "peer": peer.id, "round": peer.round})


async def status(request: web.Request) -> web.Response:
    data: dict[str, Any] = request.app[PEER].status()
    data["test_accuracy"] = clean(data["test_accuracy"])
    return web.json_response(data)


async def gossip(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    network = peer.config.network
    cap = network.max_body_bytes
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding != "identity":
        return _refuse(request, 415, f"Content-Encoding {encoding[:40]!r}: send the model uncompressed")
    if request.content_length is not None and request.content_length > cap:
        return _refuse(request, 413, f"body of {request.content_length} bytes exceeds the cap of {cap}")
    if peer.busy:
        return _refuse(request, 503, "too many exchanges in progress; retry later")
    try:
        body = await _read_body(request, cap, network)
    except PayloadTooLarge as exc:
        return _refuse(request, 413, str(exc))
    except _TooSlow as exc:
        return _refuse(request, 408, str(exc))
    except (ConnectionError, HttpProcessingError) as exc:
        # The caller hung up or broke the framing mid-body; nobody is left to answer.
        log.info("%s: /gossip body not received: %s", peer.id, exc)
        return _refuse(request, 400, "incomplete body")
    try:
        answer = await peer.receive(_identity(request), body, request.query.get("reply") == "1")
    except PayloadTooLarge as exc:
        return _reject(request, 413, str(exc))
    except RoundMismatch as exc:
        return _reject(request, exc.status, str(exc), exc.reason)
    except (WireError, Forbidden) as exc:
        return _reject(request, exc.status, str(exc))
    if answer is None:
        return web.json_response({"accepted": True, "peer": peer.id, "round": peer.round})
    return web.Response(body=answer, content_type="application/octet-stream")


async def model(request: web.Request) -> web.Response:
    refusal = _authorize(request)
    if refusal is not None:
        return refusal
    peer = request.app[PEER]
    return web.Response(body=peer.encode(peer.round), content_type="application/octet-stream")


async def metrics(request: web.Request) -> web.Response:
    text = request.app[PEER].metrics.render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


@web.middleware
async def _track_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tells the listener a request's headers are complete, which stops its header deadline."""
    connection = request.app[LISTENER].connection_for(request.transport)
    if connection is not None:
        connection.request_started()
    try:
        return await handler(request)
    finally:
        if connection is not None:
            connection.request_finished()


def make_app(peer: Peer, listener: Acceptor) -> web.Application:
    # Handlers that read a body stream it themselves; aiohttp's own cap guards the rest.
    app = web.Application(
        client_max_size=peer.config.network.max_body_bytes + 1, middlewares=[_track_requests]
    )
    app[PEER] = peer
    app[LISTENER] = listener
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_post("/gossip", gossip)
    app.router.add_get("/model", model)
    app.router.add_get("/metrics", metrics)
    return app


class Serving:
    """A running server: aiohttp's request handling behind the peer's own ``Acceptor``."""

    def __init__(self, runner: web.AppRunner, listener: Acceptor) -> None:
        self.runner = runner
        self.listener = listener

    @property
    def port(self) -> int:
        return self.listener.port

    async def close(self) -> None:
        await self.listener.close()
        await self.runner.cleanup()


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


async def serve(peer: Peer, ssl_context: ssl.SSLContext | None, sock: socket.socket | None = None) -> Serving:
    """Serve ``peer``'s API on ``sock`` (or on its configured address) until ``close``."""
    network = peer.config.network

    def count(reason: str) -> None:
        peer.metrics.rejected[reason] += 1

    listener = Acceptor(
        sock if sock is not None else _listening_socket(peer.config.host, peer.config.port),
        ssl_context,
        network,
        count,
    )
    runner = web.AppRunner(
        make_app(peer, listener),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=_SHUTDOWN_S,
        keepalive_timeout=network.keepalive_timeout_s,
        lingering_time=_LINGER_S,
        # Nothing is ever inflated on a peer's behalf: /gossip refuses Content-Encoding.
        auto_decompress=False,
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    listener.start(server)
    return Serving(runner, listener)


class HttpListener:
    """The peer's API over HTTP(S) on its configured address, or on a socket handed in."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self._serving: Serving | None = None

    async def start(self, peer: Peer) -> int:
        from gossipfl.transports.tls import server_context

        self._serving = await serve(peer, server_context(peer.tls) if peer.tls else None, self.sock)
        return self._serving.port

    async def stop(self) -> None:
        if self._serving is not None:
            await self._serving.close()
            self._serving = None
