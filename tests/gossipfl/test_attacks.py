"""Attacks on real `gossipfl peer` processes over loopback TLS, each asserting a bounded cost.

Every peer here is a subprocess started by the project's CLI, so its memory is its own
(``VmHWM``, the peak resident set, from /proc) and its descriptor limit can be lowered with
``setrlimit``. The model is a small MLP (a few KiB), so the memory bound is dominated by
the 200 MB allowance: a peer's peak RSS under attack stays within 200 MB of its RSS
before the attack.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import resource
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from gossipfl.config import (
    DataConfig,
    NeighborConfig,
    NetworkConfig,
    PeerConfig,
    TLSConfig,
    TrainConfig,
    write_peer_config,
)
from gossipfl.errors import ConfigError
from gossipfl.node.checkpoint import load_checkpoint
from gossipfl.node.recorder import CHECKPOINT
from gossipfl.transports.tls import client_context, server_context

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")

MB = 1 << 20
RSS_ALLOWANCE = 200 * MB
NETWORK = NetworkConfig(
    round_timeout_s=0.3,
    request_timeout_s=2.0,
    tls_handshake_timeout_s=2.0,
    header_timeout_s=2.0,
    keepalive_timeout_s=3.0,
    body_timeout_s=2.0,
    max_body_mb=64.0,
)


def status_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    assert match, text
    return int(match.group(1))


class PeerProcess:
    """`gossipfl peer` for peer "a" (neighbour "b" at ``neighbour_url``), with its log in a file."""

    def __init__(self, tmp: Path, tls: TLSConfig, neighbour_url: str, nofile: int | None = None) -> None:
        self.out = tmp / "out"
        config = PeerConfig(
            id="a",
            host="127.0.0.1",
            port=0,
            neighbors=(NeighborConfig("b", neighbour_url),),
            data=DataConfig(dataset="iris"),
            train=TrainConfig(model="mlp", hidden=(16,), rounds=1_000_000, local_steps=1, batch_size=16),
            network=NETWORK,
            tls=tls,
            output_dir=self.out,
        )
        path = write_peer_config(config, tmp / "a.toml")
        self.log = tmp / "peer.log"

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gossipfl", "peer", "--config", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                preexec_fn=limit,
            )
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"serving on https://127\.0\.0\.1:(\d+)", self.log.read_text())
            if match:
                return int(match.group(1))
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError("the peer did not start serving")

    @property
    def pid(self) -> int:
        return self.process.pid

    def round(self) -> int:
        try:
            return load_checkpoint(self.out / CHECKPOINT, "a").round
        except ConfigError:  # not written yet
            return 0

    async def progress(self, rounds: int, within_s: float) -> int:
        """Wait until ``rounds`` more rounds are checkpointed; returns the round reached."""
        start = self.round()
        deadline = time.monotonic() + within_s
        while self.round() < start + rounds:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"stuck at round {self.round()}: {self.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.1)
        return self.round()

    def rss(self) -> int:
        return status_kib(self.pid, "VmRSS") * 1024

    def peak(self) -> int:
        return status_kib(self.pid, "VmHWM") * 1024

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log.read_text()


@pytest.fixture
def peer_process(tmp_path: Path, tls_paths: Callable[..., TLSConfig]):  # type: ignore[no-untyped-def]
    started: list[PeerProcess] = []

    def start(neighbour_url: str = "https://127.0.0.1:9", nofile: int | None = None) -> PeerProcess:
        peer = PeerProcess(tmp_path, tls_paths("a"), neighbour_url, nofile)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        log = peer.stop()
        assert "Traceback" not in log, log[-3000:]


def anonymous_context(pki: Path) -> ssl.SSLContext:
    """TLS that trusts the network CA but presents no certificate."""
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


async def send_head(
    port: int, context: ssl.SSLContext, head: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="a")
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def status_of(reader: asyncio.StreamReader, within_s: float = 5.0) -> int:
    line = await asyncio.wait_for(reader.readline(), within_s)
    return int(line.split()[1])


async def write_until_cut(writer: asyncio.StreamWriter, pieces: list[bytes], pause_s: float) -> None:
    """Send ``pieces`` one by one; raises ConnectionResetError once the peer hangs up."""
    for piece in pieces:
        if writer.transport.is_closing():
            raise ConnectionResetError("closed by the peer")
        writer.write(piece)
        await asyncio.wait_for(writer.drain(), 5)
        await asyncio.sleep(pause_s)


def gzip_bomb(inflated: int) -> bytes:
    """``inflated`` zero bytes, gzip-compressed (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MB)
    parts = [packer.compress(zeros) for _ in range(inflated // MB)]
    return b"".join(parts) + packer.flush()


async def test_bombs_and_large_bodies_without_a_certificate_cost_a_bounded_amount(
    peer_process, pki: Path
) -> None:  # type: ignore[no-untyped-def]
    peer = peer_process()
    await peer.progress(1, within_s=60)
    before = peer.rss()
    bomb = gzip_bomb(128 * MB)
    assert len(bomb) < 256 * 1024 and len(gzip.decompress(bomb)) == 128 * MB
    anonymous = anonymous_context(pki)

    async def one_bomb() -> int | str:
        reader, writer = await send_head(
            peer.port,
            anonymous,
            "POST /gossip HTTP/1.1\r\nHost: a\r\nContent-Encoding: gzip\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(bomb)}\r\n\r\n",
        )
        try:
            writer.write(bomb)
            await writer.drain()
            return await status_of(reader)
        except (ConnectionError, ssl.SSLError):
            # Closed on the unread rest of the bomb, which can reset the connection
            # before the 401 is read: refused either way.
            return "reset"
        finally:
            writer.close()

    # 16 concurrent bombs of 128 MiB inflated each (2 GiB in all, 2 MiB sent)
    statuses = await asyncio.gather(*(one_bomb() for _ in range(16)))
    assert set(statuses) <= {401, "reset"} and 401 in statuses, statuses

    # 200 MiB declared, and a chunked body without end: both answered from the headers alone
    for head in (
        f"POST /gossip HTTP/1.1\r\nHost: a\r\nContent-Length: {200 * MB}\r\n\r\n",
        "POST /gossip HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    ):
        reader, writer = await send_head(peer.port, anonymous, head)
        assert await status_of(reader) == 401  # before a single body byte was sent
        chunk = b"%x\r\n%s\r\n" % (MB, bytes(MB)) if "chunked" in head else bytes(MB)
        refused = time.monotonic()
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await write_until_cut(writer, [chunk] * 512, pause_s=0)
        # TLS discards what arrives while it closes, for at most a second; then it hangs up.
        assert time.monotonic() - refused < 3.0
        writer.close()
    await peer.progress(2, within_s=30)
    assert peer.peak() - before < RSS_ALLOWANCE, (before, peer.peak())
    print(f"bombs: RSS before {before / MB:.0f} MB, peak {peer.peak() / MB:.0f} MB")


async def test_idle_and_slow_connections_under_a_low_descriptor_limit_leave_the_peer_training(
    peer_process, pki: Path, tls_paths: Callable[..., TLSConfig]
) -> None:  # type: ignore[no-untyped-def]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip("this test needs 2048 descriptors of its own")
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, 4096) if hard == resource.RLIM_INFINITY else min(hard, 4096), hard)
    )
    peer = peer_process(nofile=1024)
    await peer.progress(1, within_s=60)
    idle: list[asyncio.StreamWriter] = []
    try:
        # slowloris: TLS (while there is room), then request headers at a byte every half second
        _, slow = await asyncio.open_connection(
            "127.0.0.1", peer.port, ssl=anonymous_context(pki), server_hostname="a"
        )
        opened = time.monotonic()
        # 1,100 connections that never start TLS, more than `ulimit -n 1024` allows the peer
        for _ in range(1100):
            with contextlib.suppress(ConnectionError, OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", peer.port)
                idle.append(writer)
        drip = [bytes([c]) for c in b"GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"x" * 100]
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await write_until_cut(slow, drip, pause_s=0.5)
        held = time.monotonic() - opened
        assert held < NETWORK.header_timeout_s + 5.0, held  # the old peer held it for 60 s
        # it keeps training and checkpointing all the while (the old peer died here on EMFILE)
        await peer.progress(3, within_s=30)
    finally:
        for writer in idle:
            writer.close()
    # a slow body from a neighbour is cut off too: 408 after body_timeout_s, not held
    reader, writer = await send_head(
        peer.port,
        client_context(tls_paths("b")),
        "POST /gossip HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n",
    )
    started = time.monotonic()
    trickle = asyncio.create_task(write_until_cut(writer, [b"x"] * 100, pause_s=0.25))
    assert await status_of(reader, within_s=NETWORK.body_timeout_s + 5.0) == 408
    assert time.monotonic() - started < NETWORK.body_timeout_s + 3.0
    trickle.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionError, ssl.SSLError):
        await trickle
    writer.close()
    # and once the attackers are gone it answers again
    reader, writer = await send_head(
        peer.port, anonymous_context(pki), "GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert await status_of(reader) == 200
    writer.close()
    metrics_text = ""
    reader, writer = await send_head(
        peer.port, anonymous_context(pki), "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    metrics_text = (await asyncio.wait_for(reader.read(), 5)).decode()
    writer.close()
    assert (
        'reason="too_many_unauthenticated"' in metrics_text or 'reason="too_many_connections"' in metrics_text
    )
    assert 'reason="header_timeout"' in metrics_text


async def _endless_error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A hostile neighbour: answers every request 400 with a body that never ends."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (MB, b"x" * MB)
        # Endless for as long as the pusher could read it (its deadline), then on to the next.
        stop = time.monotonic() + NETWORK.request_timeout_s + 1.0
        while time.monotonic() < stop and not writer.transport.is_closing():
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def test_an_endless_error_reply_costs_the_pushing_peer_a_bounded_amount(
    peer_process, tls_paths: Callable[..., TLSConfig]
) -> None:  # type: ignore[no-untyped-def]
    hostile = await asyncio.start_server(_endless_error, "127.0.0.1", 0, ssl=server_context(tls_paths("b")))
    port = hostile.sockets[0].getsockname()[1]
    try:
        peer = peer_process(neighbour_url=f"https://127.0.0.1:{port}")
        await peer.progress(1, within_s=60)
        before = peer.rss()
        # three pushes answered by an endless 400 (the neighbour's backoff spaces them out)
        deadline = time.monotonic() + 30
        while peer.log.read_text().count("refused with HTTP 400") < 3:
            assert time.monotonic() < deadline and peer.process.poll() is None, peer.log.read_text()[-2000:]
            await asyncio.sleep(0.2)
        await peer.progress(2, within_s=30)
        assert peer.peak() - before < RSS_ALLOWANCE, (before, peer.peak())
        print(f"endless error: RSS before {before / MB:.0f} MB, peak {peer.peak() / MB:.0f} MB")
    finally:
        hostile.close()
        await hostile.wait_closed()
