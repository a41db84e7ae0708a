"""The issue-11 findings on real peers in this process: who is asked before a body is
read, what a neighbour can make a peer record, checkpoints that are not trusted, files
that stay private, and malformed headers that stay inside the error tree."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import ssl
import stat
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import networkx as nx
import pytest
import torch

from gossipfl.config import DataConfig, NetworkConfig, TrainConfig, load_peer_config
from gossipfl.errors import ConfigError, Refused
from gossipfl.learning.trainer import build_trainer
from gossipfl.node.checkpoint import _digest, load_checkpoint, restore_checkpoint, save_checkpoint
from gossipfl.node.peer import Peer
from gossipfl.node.recorder import CHECKPOINT
from gossipfl.transports.channels import HttpTransport
from gossipfl.transports.tls import client_context, create_ca, issue_certificate
from gossipfl.transports.wire import encode, safetensors_bytes

PAIR = nx.Graph([("a", "b")])


def url(peer: Peer, path: str) -> str:
    return f"{'https' if peer.tls else 'http'}://127.0.0.1:{peer.port}{path}"


async def post(peer: Peer, body: object, context: ssl.SSLContext | bool, **headers: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    extra = {"server_hostname": "a"} if context else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url(peer, "/gossip?reply=0"), data=body, ssl=context, headers=headers, **extra
        ) as response,
    ):
        return response.status, await response.json()


async def metrics(peer: Peer) -> str:
    async with aiohttp.ClientSession() as session, session.get(url(peer, "/metrics"), ssl=False) as response:
        return await response.text()


def huge_header_body(tensors: int) -> bytes:
    """A well-formed message of ``tensors`` one-element tensors: a big header to parse."""
    return bytes(
        encode({f"t{i}": torch.zeros(1) for i in range(tensors)}, sender="stranger", round_=1, num_samples=1)
    )


async def test_a_non_neighbour_is_refused_before_its_body_is_parsed(build_peers, tls_paths) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR)
    await a.start(gossip=False)
    try:
        body = huge_header_body(15_000)  # a header just under the 1 MiB header cap
        assert 900_000 < struct.unpack("<Q", body[:8])[0] < 1 << 20
        started = time.monotonic()
        for _ in range(20):
            status, reply = await post(a, io.BytesIO(body), client_context(tls_paths("stranger")))
            assert (status, reply["error"]) == (403, "forbidden"), reply
            assert "t14999" not in reply["detail"] and "shape" not in reply["detail"]
        # twenty such headers cost the old peer 6 s of parsing; refusals cost nothing
        assert time.monotonic() - started < 6.0
    finally:
        await a.stop()
        await b.stop()


async def test_gossip_refuses_content_encoding_and_streams_the_cap(build_peers, tls_paths) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR, network=NetworkConfig(max_body_mb=1.0))
    await a.start(gossip=False)
    try:
        neighbour = client_context(tls_paths("b"))
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        bomb = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()
        status, reply = await post(a, bomb, neighbour, **{"Content-Encoding": "gzip"})
        assert (status, reply["error"]) == (415, "unsupported_encoding")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):  # 8 MiB, chunked: no Content-Length to refuse it by
                yield bytes(1 << 20)

        try:
            status, reply = await post(a, chunks(), neighbour)
            assert (status, reply["error"]) == (413, "too_large")
        except aiohttp.ClientError:
            pass  # refused mid-upload, and the line cut before the client read the 413
        assert 'reason="too_large"} 1' in await metrics(a)
    finally:
        await a.stop()
        await b.stop()


async def test_a_client_hanging_up_mid_body_logs_no_traceback(build_peers, caplog) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR, tls=False)
    await a.start(gossip=False)
    try:
        with caplog.at_level(logging.DEBUG):
            _, writer = await asyncio.open_connection("127.0.0.1", a.port)
            writer.write(b"POST /gossip HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + bytes(1000))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await asyncio.sleep(0.3)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text
        async with aiohttp.ClientSession() as session, session.get(url(a, "/health")) as response:
            assert response.status == 200
    finally:
        await a.stop()
        await b.stop()


async def test_a_neighbour_cannot_set_its_round_in_status_to_any_value(build_peers) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR, tls=False)
    await a.start(gossip=False)
    try:
        status, _ = await post(a, encode(a.weights, sender="b", round_=10**18, num_samples=1), False)
        assert status == 409  # valid, but not usable yet: said so, and not recorded either
        status, _ = await post(a, encode(a.weights, sender="b", round_=2, num_samples=1), False)
        assert status == 200
        assert a.neighbours.status()[0]["last_round"] == 2
    finally:
        await a.stop()
        await b.stop()


async def test_server_and_client_identify_a_certificate_by_the_same_name(
    build_peers, pki: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # A certificate whose common name is "mallory" but whose DNS name is also "b": a client
    # dialling b accepts it as b (hostname check on DNS names), so the server must too.
    issue_certificate(pki / "ca.pem", pki / "ca.key", "mallory", ["b"], tmp_path)
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(str(tmp_path / "mallory.pem"), str(tmp_path / "mallory.key"))
    a, b = build_peers(PAIR)
    await a.start(gossip=False)
    try:
        status, reply = await post(a, encode(a.weights, sender="b", round_=1, num_samples=1), context)
        assert status == 200, reply
        status, reply = await post(a, encode(a.weights, sender="mallory", round_=1, num_samples=1), context)
        assert status == 403 and "certificate is 'b'" in reply["detail"]
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 100_000,
        json.dumps(
            {"__metadata__": {"sender": "b"}, "w": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]}}
        )
        .encode()
        .replace(b'"shape": []', b'"shape": ' + b"[" * 2000 + b"]" * 2000),
        b'{"__metadata__": {}, "n": ' + b"7" * 4342 + b"}",
    ],
    ids=["100k-brackets", "array-2000-deep", "4342-digits"],
)
async def test_malformed_headers_are_400_and_counted_not_500(build_peers, header: bytes) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR, tls=False)
    await a.start(gossip=False)
    try:
        status, reply = await post(a, struct.pack("<Q", len(header)) + header, False)
        assert (status, reply["error"]) == (400, "malformed"), reply
        assert 'reason="malformed"} 1' in await metrics(a)
    finally:
        await a.stop()
        await b.stop()


async def test_error_replies_are_read_only_up_to_a_few_kib(tls_paths) -> None:  # type: ignore[no-untyped-def]
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 1 << 30 and not writer.transport.is_closing():
                writer.write(b"%x\r\n%s\r\n" % (1 << 16, b"x" * (1 << 16)))
                await writer.drain()
                sent += 1 << 16
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(None, max_body_bytes=1 << 20)
    try:
        from gossipfl.config import NeighborConfig

        started = time.monotonic()
        with pytest.raises(Refused, match="HTTP 400"):
            await transport.send(
                NeighborConfig("b", f"http://127.0.0.1:{port}"), b"x", reply=False, limit_s=10
            )
        assert time.monotonic() - started < 2.0
        await asyncio.sleep(0.2)
        assert sent < 32 << 20  # the old client read for the whole 10 s deadline
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()


# -- checkpoints -------------------------------------------------------------------------


def write_checkpoint(
    path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor], digest: bool = True
) -> None:
    if digest:
        metadata = {**metadata, "sha256": _digest(metadata, tensors)}
    path.write_bytes(bytes(safetensors_bytes(tensors, metadata)))


WEIGHTS = {"w": torch.ones(3)}
GOOD = {"format": "gossipfl-checkpoint-2", "peer": "a", "round": "4"}


def test_a_flipped_byte_in_the_weights_is_detected(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, 4, WEIGHTS, {}, "a")
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # inside w's float data
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="checksum mismatch") as info:
        load_checkpoint(path, "a")
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"round": "-5"}, "non-negative integer"),
        ({"round": "abc"}, "non-negative integer"),
        ({"round": " 5 "}, "non-negative integer"),
        ({"round": None}, "non-negative integer"),
        ({"peer": "b"}, "belongs to 'b'"),
    ],
)
def test_checkpoint_metadata_is_validated_and_errors_name_the_file(
    tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    path = tmp_path / CHECKPOINT
    metadata = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    write_checkpoint(path, metadata, WEIGHTS)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message) as info:
        load_checkpoint(path, "a")
    assert str(path) in str(info.value)


def test_nan_weights_and_wrong_optimizer_state_are_refused_naming_the_file(tmp_path: Path) -> None:
    trainer = build_trainer("a", DataConfig(dataset="iris"), TrainConfig(hidden=(4,), momentum=0.9))
    template = trainer.get_weights()
    path = tmp_path / CHECKPOINT
    nan = {k: torch.full_like(v, float("nan")) for k, v in template.items()}
    save_checkpoint(path, 3, nan, {}, "a")
    with pytest.raises(ConfigError, match="NaN") as info:
        restore_checkpoint(path, "a", template, trainer)
    assert str(path) in str(info.value)
    save_checkpoint(path, 3, template, {"momentum": torch.zeros(7)}, "a")
    with pytest.raises(ConfigError, match="optimizer state does not fit") as info:
        restore_checkpoint(path, "a", template, trainer)
    assert str(path) in str(info.value) and trainer.models.momentum is None  # nothing changed
    good = {k: v + 1 for k, v in template.items()}
    save_checkpoint(path, 3, good, {"momentum": torch.zeros_like(trainer.models.flat)}, "a")
    restored = restore_checkpoint(path, "a", template, trainer)
    assert restored.round == 3 and all(torch.equal(restored.weights[k], good[k]) for k in good)


# -- files that stay private -------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_private_from_their_first_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With chmod disabled, what the files were created with is what a racing reader sees.
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    old = os.umask(0o022)
    try:
        ca, ca_key = create_ca(tmp_path / "certs")
        _, key = issue_certificate(ca, ca_key, "p0", ["127.0.0.1"], tmp_path / "certs")
    finally:
        os.umask(old)
    assert mode(ca_key) == 0o600 and mode(key) == 0o600
    assert mode(tmp_path / "certs") == 0o700
    assert mode(ca) == 0o644  # certificates are public


def test_certs_command_keeps_the_certs_directory_private(tmp_path: Path) -> None:
    from gossipfl.cli import main

    graph = tmp_path / "g.json"
    graph.write_text('{"p0": ["p1"], "p1": ["p0"]}')
    assert main(["topology", str(graph), "--out", str(tmp_path / "net"), "--dataset", "iris"]) == 0
    (tmp_path / "net" / "certs").mkdir(mode=0o755)
    assert main(["certs", str(tmp_path / "net")]) == 0
    assert mode(tmp_path / "net" / "certs") == 0o700
    assert all(mode(k) == 0o600 for k in (tmp_path / "net" / "certs").glob("*.key"))


async def test_checkpoints_and_metrics_are_not_world_readable(
    build_peers, train_config, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    lonely = nx.Graph()
    lonely.add_node("a")
    old = os.umask(0o022)
    try:
        (peer,) = build_peers(lonely, tls=False, train=train_config(rounds=2), output=True)
        async with peer:
            await peer.wait()
    finally:
        os.umask(old)
    out = tmp_path / "out" / "a"
    assert mode(out) == 0o700
    assert mode(out / CHECKPOINT) == 0o600 and mode(out / "metrics.jsonl") == 0o600


def test_network_timeouts_and_caps_are_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'id = "p0"\nlisten = "127.0.0.1:7000"\n[network]\ntls_handshake_timeout_s = 1.5\n'
        "header_timeout_s = 2\nkeepalive_timeout_s = 3.0\nbody_timeout_s = 4.0\nmin_body_rate_kib_s = 8.0\n"
        "max_connections = 100\nmax_unauthenticated = 10\n"
    )
    network = load_peer_config(path).network
    assert (network.tls_handshake_timeout_s, network.header_timeout_s, network.keepalive_timeout_s) == (
        1.5,
        2.0,
        3.0,
    )
    assert (network.body_timeout_s, network.min_body_rate_kib_s) == (4.0, 8.0)
    assert (network.max_connections, network.max_unauthenticated) == (100, 10)
    path.write_text('id = "p0"\nlisten = "127.0.0.1:7000"\n[network]\nmax_connections = 0\n')
    with pytest.raises(ConfigError, match=r"\[network\].max_connections: must be >= 1"):
        load_peer_config(path)
