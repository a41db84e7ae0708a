"""Real peers on loopback sockets: mutual TLS, refusals, failures, resume."""

import asyncio
import ssl
from pathlib import Path

import aiohttp
import networkx as nx
import pytest
import torch

import topologies as t
from gossipfl.config import NetworkConfig
from gossipfl.errors import ConfigError
from gossipfl.node.checkpoint import load_checkpoint, save_checkpoint
from gossipfl.node.peer import Peer
from gossipfl.node.recorder import CHECKPOINT
from gossipfl.transports.tls import client_context
from gossipfl.transports.wire import encode

PAIR = nx.Graph([("a", "b")])


def snapshot(peer: Peer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in peer.weights.items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def url(peer: Peer, path: str) -> str:
    scheme = "https" if peer.tls else "http"
    return f"{scheme}://127.0.0.1:{peer.port}{path}"


async def post(
    peer: Peer, body: bytes, context: ssl.SSLContext | bool = False, name: str = "a"
) -> tuple[int, dict]:  # type: ignore[type-arg]
    extra = {"server_hostname": peer.id} if context else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(peer, "/gossip?reply=0"), data=body, ssl=context, **extra) as response,
    ):
        return response.status, await response.json()


async def test_two_peers_over_mutual_tls_reach_consensus(build_peers) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR)
    async with a, b:
        await asyncio.gather(a.wait(), b.wait())
        # Two peers of degree 1 under Metropolis–Hastings average with weight 1/2 each.
        for name in a.weights:
            torch.testing.assert_close(a.weights[name], b.weights[name])
        assert a.metrics.rounds == 3 and b.metrics.bytes_in > 0
        assert a.neighbours.status()[0]["last_round"] == 3


async def test_refuses_missing_foreign_and_non_neighbour_certificates(
    build_peers, tls_paths, pki: Path
) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR)
    await a.start(gossip=False)
    try:
        before = snapshot(a)
        body = encode(a.weights, sender="b", round_=1, num_samples=1, degree=1)
        no_cert = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        status, reply = await post(a, body, no_cert)
        assert (status, reply["error"]) == (401, "unauthenticated")
        with pytest.raises(aiohttp.ClientError):  # the TLS handshake itself fails
            await post(a, body, client_context(tls_paths("a", pki / "other")))
        status, reply = await post(
            a,
            encode(a.weights, sender="stranger", round_=1, num_samples=1),
            client_context(tls_paths("stranger")),
        )
        assert status == 403 and "not a neighbour" in reply["detail"]
        # b's certificate, but the message claims to come from someone else
        status, reply = await post(
            a, encode(a.weights, sender="stranger", round_=1, num_samples=1), client_context(tls_paths("b"))
        )
        assert status == 403 and "certificate is 'b'" in reply["detail"]
        async with aiohttp.ClientSession() as session:
            async with session.get(
                url(a, "/model"), ssl=client_context(tls_paths("stranger")), server_hostname="a"
            ) as response:
                assert response.status == 403
            async with session.get(url(a, "/health"), ssl=no_cert, server_hostname="a") as response:
                assert (response.status, (await response.json())["peer"]) == (200, "a")
            async with session.get(url(a, "/metrics"), ssl=no_cert, server_hostname="a") as response:
                text = await response.text()
        assert 'gossipfl_rejected_requests_total{peer="a",reason="forbidden"} 3' in text
        assert 'reason="unauthenticated"} 1' in text
        assert same(before, a.weights)
    finally:
        await a.stop()
        await b.stop()


async def test_bad_bodies_get_their_status_and_change_nothing(build_peers) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR, tls=False, network=NetworkConfig(max_body_mb=0.01))
    await a.start(gossip=False)
    try:
        before = snapshot(a)
        good = a.weights
        wrong_shape = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in good.items()}
        nan = {k: torch.full_like(v, float("nan")) for k, v in good.items()}
        huge = {k: torch.zeros(4000) for k in good}
        cases = [
            (b"garbage bytes", 400, "malformed"),
            (encode(wrong_shape, sender="b", round_=1, num_samples=1), 422, "invalid_model"),
            (encode(nan, sender="b", round_=1, num_samples=1), 422, "invalid_model"),
            (encode(huge, sender="b", round_=1, num_samples=1), 413, "too_large"),
            (encode(good, sender="mallory", round_=1, num_samples=1), 403, "forbidden"),
        ]
        for body, status, error in cases:
            got, reply = await post(a, body)
            assert (got, reply["error"]) == (status, error), reply
            assert same(before, a.weights)
        # valid, but for a round far ahead: refused as not usable yet (the sender retries), never stored
        got, reply = await post(a, encode(good, sender="b", round_=50, num_samples=1))
        assert (got, reply["error"]) == (409, "too_early")
        assert len(a.rounds.inbox) == 0  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session, session.get(url(a, "/status")) as response:
            status_json = await response.json()
        assert status_json["peer"] == "a" and status_json["neighbours"][0]["id"] == "b"
    finally:
        await a.stop()
        await b.stop()


async def test_killed_neighbour_is_skipped_and_the_others_finish(build_peers, train_config) -> None:  # type: ignore[no-untyped-def]
    graph = t.ring(4)
    peers = build_peers(
        graph,
        tls=False,
        train=train_config(rounds=6),
        network=NetworkConfig(round_timeout_s=1.0, request_timeout_s=1.0),
    )
    victim = peers[2]

    def kill_after_two(peer: Peer, round_: int) -> None:
        if round_ == 2:
            asyncio.get_running_loop().create_task(peer.stop())

    victim.on_round = kill_after_two
    for p in peers:
        await p.start()
    try:
        survivors = [p for p in peers if p is not victim]
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in survivors)), timeout=60)
        assert all(p.round == 6 and p.phase == "done" for p in survivors)
        for neighbour in (peers[1], peers[3]):
            entry = next(n for n in neighbour.neighbours.status() if n["id"] == victim.id)
            assert entry["failures"] >= 1 and entry["last_round"] <= 3
    finally:
        for p in peers:
            await p.stop()


async def test_resume_continues_from_the_checkpoint(build_peers, train_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lonely = nx.Graph()
    lonely.add_node("a")
    (first,) = build_peers(lonely, tls=False, train=train_config(rounds=3), output=True)
    async with first:
        await first.wait()
    out = tmp_path / "out" / "a"
    after_three = snapshot(first)
    assert load_checkpoint(out / CHECKPOINT, "a").round == 3
    (second,) = build_peers(lonely, tls=False, train=train_config(rounds=5), output=True, resume=True)
    await second.start(gossip=False)
    await second.stop()
    assert second.round == 0  # nothing ran yet
    (third,) = build_peers(lonely, tls=False, train=train_config(rounds=5), output=True, resume=True)
    async with third:
        await third.wait()
    rounds = [
        int(line.split('"round": ')[1].split(",")[0])
        for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert rounds == [1, 2, 3, 4, 5]
    assert load_checkpoint(out / CHECKPOINT, "a").round == 5
    assert not same(after_three, third.weights)


def test_checkpoint_is_atomic_and_refuses_torn_or_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT
    weights = {"w": torch.ones(3)}
    save_checkpoint(path, 4, weights, {"momentum": torch.zeros(3)}, "a")
    # a crash mid-write leaves only the temporary file, which loading ignores
    (tmp_path / f".{CHECKPOINT}.tmp").write_bytes(b"half a checkp")
    restored = load_checkpoint(path, "a")
    assert restored.round == 4 and torch.equal(restored.weights["w"], weights["w"])
    assert torch.equal(restored.optimizer["momentum"], torch.zeros(3))
    with pytest.raises(ConfigError, match="belongs to 'a'"):
        load_checkpoint(path, "b")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_checkpoint(path, "a")


async def test_async_gossip_learning_converges_pairwise(build_peers, train_config) -> None:  # type: ignore[no-untyped-def]
    peers = build_peers(t.ring(3), tls=False, train=train_config(rounds=8, mode="async"))
    for p in peers:
        await p.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in peers)), timeout=60)
        assert all(p.last_accuracy > 0.6 for p in peers)
        assert all(p.metrics.bytes_in > 0 for p in peers)
    finally:
        for p in peers:
            await p.stop()


async def test_peer_without_tls_needs_insecure(build_peers) -> None:  # type: ignore[no-untyped-def]
    a, b = build_peers(PAIR, tls=False)
    with pytest.raises(ConfigError, match="--insecure"):
        Peer(a.config, a.trainer)
    await a.stop()
    await b.stop()


async def test_in_memory_transport_runs_the_same_gossip_logic(build_peers, train_config) -> None:  # type: ignore[no-untyped-def]
    from gossipfl.transports.channels import MemoryTransport

    peers = build_peers(t.ring(3), tls=False, train=train_config(rounds=2))
    registry = {}
    wired = []
    for p in peers:
        twin = Peer(p.config, p.trainer, insecure=True, transport=MemoryTransport(p.id, registry))
        registry[p.id] = lambda sender, body, reply, peer=twin: peer.receive(sender, body, reply)
        wired.append(twin)
    for p in peers:
        await p.stop()  # only their sockets and trainers were borrowed
    for twin in wired:
        twin.start_gossip()  # no server: messages go straight to receive()
    await asyncio.wait_for(asyncio.gather(*(tw.wait() for tw in wired)), timeout=60)
    # a ring of 3 under Metropolis–Hastings is the complete graph with weights 1/3: consensus
    for name in wired[0].weights:
        torch.testing.assert_close(wired[0].weights[name], wired[2].weights[name])
    # the twin enforces who may send, exactly as the HTTP server does
    body = encode(wired[0].weights, sender=wired[1].id, round_=9, num_samples=1)
    with pytest.raises(Exception, match="certificate is"):
        await wired[0].receive(wired[2].id, body, False)
    for twin in wired:
        await twin.stop()


def test_sigterm_stops_a_peer_cleanly_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from gossipfl.cli import main

    graph = tmp_path / "g.json"
    graph.write_text('{"solo": [], "ghost": []}')
    net = tmp_path / "net"
    from sim.fleet import bind_loopback

    (probe,) = bind_loopback(1)
    port = probe.getsockname()[1]  # free a moment ago; only "solo" will listen, on this one
    probe.close()
    assert (
        main(
            [
                "topology",
                str(graph),
                "--out",
                str(net),
                "--dataset",
                "iris",
                "--rounds",
                "100000",
                "--base-port",
                str(port),
            ]
        )
        == 0
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gossipfl", "peer", "--config", str(net / "solo.toml"), "--insecure"],
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = net / "out" / "solo" / CHECKPOINT
    deadline = time.monotonic() + 60
    while not checkpoint.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "stopped by signal" in stderr and "Traceback" not in stderr
    assert load_checkpoint(checkpoint, "solo").round >= 1
