"""The peer's HTTP API (aiohttp): /health, /status, /gossip, /model, /metrics.

Errors are JSON ``{"error": ..., "detail": ...}`` with the status the failure class
carries; every rejection is counted by reason in /metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from gossipfl.errors import Forbidden, PayloadTooLarge, RoundMismatch, WireError
from gossipfl.node.jsonl import clean
from gossipfl.transports.tls import peer_identity

if TYPE_CHECKING:
    import socket

    from gossipfl.node.peer import Peer

__all__ = ["HttpListener", "make_app"]

PEER: web.AppKey[Peer] = web.AppKey("peer")
_REASONS = {
    400: "malformed",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    422: "invalid_model",
    503: "busy",
}


def _reject(request: web.Request, status: int, detail: str, reason: str | None = None) -> web.Response:
    reason = reason or _REASONS.get(status, "error")
    request.app[PEER].metrics.rejected[reason] += 1
    return web.json_response({"error": reason, "detail": detail}, status=status)


def _identity(request: web.Request) -> str | None:
    transport = request.transport
    return None if transport is None else peer_identity(transport.get_extra_info("peercert"))


def _authorize(request: web.Request) -> web.Response | None:
    """None if the caller may read this peer's model, else the refusal to send."""
    peer = request.app[PEER]
    if peer.tls is None:
        return None
    identity = _identity(request)
    if identity is None:
        return _reject(request, 401, "a client certificate is required")
    if identity not in peer.neighbours:
        return _reject(request, 403, f"{identity!r} is not a neighbour of {peer.id!r}")
    return None


async def health(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    return web.json_response({"status": "ok", "peer": peer.id, "round": peer.round})


async def status(request: web.Request) -> web.Response:
    data: dict[str, Any] = request.app[PEER].status()
    data["test_accuracy"] = clean(data["test_accuracy"])
    return web.json_response(data)


async def gossip(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    cap = peer.config.network.max_body_bytes
    if request.content_length is not None and request.content_length > cap:
        return _reject(request, 413, f"body of {request.content_length} bytes exceeds the cap of {cap}")
    if peer.busy:
        return _reject(request, 503, "too many exchanges in progress; retry later")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _reject(request, 413, f"body exceeds the cap of {cap} bytes")
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


def make_app(peer: Peer) -> web.Application:
    # aiohttp refuses larger bodies itself (we turn that into our JSON 413).
    app = web.Application(client_max_size=peer.config.network.max_body_bytes + 1)
    app[PEER] = peer
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_post("/gossip", gossip)
    app.router.add_get("/model", model)
    app.router.add_get("/metrics", metrics)
    return app


class HttpListener:
    """The peer's API over HTTP(S) on its configured address, or on a socket handed in."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self._runner: web.AppRunner | None = None

    async def start(self, peer: Peer) -> int:
        from gossipfl.transports.tls import server_context

        ssl_context = server_context(peer.tls) if peer.tls else None
        self._runner = web.AppRunner(make_app(peer), access_log=None, handle_signals=False)
        await self._runner.setup()
        site: web.BaseSite
        if self.sock is not None:
            site = web.SockSite(self._runner, self.sock, ssl_context=ssl_context)
        else:
            site = web.TCPSite(self._runner, peer.config.host, peer.config.port, ssl_context=ssl_context)
        await site.start()
        for address in self._runner.addresses:  # the bound port, also when 0 was asked for
            if isinstance(address, tuple):
                return int(address[1])
        return peer.config.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
