"""Peer benchmarks (issue 4). Run: python scripts/bench_wire.py [--repeats 5]

1. Push-pull of a 10M-parameter model (40 MB each way) between two peers on loopback, over
   plain HTTP and over mutual TLS, against a raw loopback socket moving the same bytes both
   ways, all in this run. A push-pull here is the whole exchange: encode, send, validate,
   average and reply on one side, validate and average on the other.
2. 32 peers in one process on a ring, 1M-parameter model, sync mode: seconds per gossip round
   and peak memory (a fresh process, so the peak is this workload's).
3. `gossipfl sim --engine network`, ring of 8, 20 rounds of 1 local epoch on digits
   (MLP 64-64-10): seconds of the whole process, and its final accuracy.
Figures are medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from gossipfl.config import NeighborConfig, NetworkConfig, PeerConfig, TrainConfig
from gossipfl.node.peer import Peer
from sim.fleet import bind_loopback, wire_loopback


class StaticTrainer:
    """A model of ``size`` parameters whose local step is a tiny deterministic nudge: the
    benchmark measures communication, not training."""

    def __init__(self, size: int, seed: int) -> None:
        self.weights = {"w": torch.randn(size, generator=torch.Generator().manual_seed(seed))}
        self.num_samples = 1

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.weights.items()}

    def set_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        self.weights = {k: v.clone() for k, v in weights.items()}

    def fit(self, round_: int) -> float:
        self.weights["w"].mul_(0.999)
        return math.nan

    def evaluate(self) -> tuple[float, float]:
        return math.nan, math.nan

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_optimizer_state(self, state: Mapping[str, torch.Tensor]) -> None:
        return None


def _configs(
    ids: list[str], neighbours: dict[str, list[str]], mode: str, rounds: int, tls: dict[str, object]
) -> list[PeerConfig]:
    network = NetworkConfig(round_timeout_s=120, request_timeout_s=120, max_body_mb=1024)
    return [
        PeerConfig(
            id=i,
            host="127.0.0.1",
            port=0,
            neighbors=tuple(NeighborConfig(n, "http://x:1") for n in neighbours[i]),
            train=TrainConfig(rounds=rounds, mode=mode),  # type: ignore[arg-type]
            network=network,
            tls=tls.get(i),  # type: ignore[arg-type]
        )
        for i in ids
    ]


async def _raw_socket_seconds(nbytes: int) -> float:
    """Send ``nbytes`` to a loopback server and read ``nbytes`` back."""
    payload = b"\x01" * nbytes

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(nbytes)
        writer.write(data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    await reader.readexactly(nbytes)
    seconds = time.perf_counter() - start
    writer.close()
    server.close()
    await server.wait_closed()
    return seconds


async def _push_pull_seconds(size: int, tls: bool, repeats: int) -> list[float]:
    tls_paths: dict[str, object] = {}
    if tls:
        from gossipfl.config import TLSConfig
        from gossipfl.transports.tls import create_ca, issue_certificate

        directory = Path(tempfile.mkdtemp())
        ca, key = create_ca(directory)
        for name in ("a", "b"):
            cert, private = issue_certificate(ca, key, name, ["127.0.0.1"], directory)
            tls_paths[name] = TLSConfig(ca, cert, private)
    configs = _configs(["a", "b"], {"a": ["b"], "b": ["a"]}, "async", 1, tls_paths)
    sockets = bind_loopback(2)
    peers = [
        Peer(c, StaticTrainer(size, i), insecure=not tls, sock=s)
        for i, (c, s) in enumerate(zip(wire_loopback(configs, sockets), sockets, strict=True))
    ]
    times = []
    for p in peers:
        await p.start(gossip=False)
    try:
        await peers[0].rounds.exchange(1)  # warm-up: connection, TLS handshake
        for _ in range(repeats):
            start = time.perf_counter()
            assert await peers[0].rounds.exchange(1) == 1
            times.append(time.perf_counter() - start)
    finally:
        for p in peers:
            await p.stop()
    return times


def bench_push_pull(repeats: int) -> dict[str, float]:
    size = 10_000_000
    body = len(_message_bytes(size))
    raw = statistics.median(asyncio.run(_raw_socket_seconds(body)) for _ in range(repeats))
    plain = statistics.median(asyncio.run(_push_pull_seconds(size, False, repeats)))
    tls = statistics.median(asyncio.run(_push_pull_seconds(size, True, repeats)))
    moved = 2 * body / 1e6
    return {
        "message_mb": body / 1e6,
        "raw_socket_mb_s": moved / raw,
        "http_mb_s": moved / plain,
        "mtls_mb_s": moved / tls,
        "http_vs_raw": raw / plain,
        "mtls_vs_raw": raw / tls,
    }


def _message_bytes(size: int) -> bytes:
    from gossipfl.transports.wire import encode

    return encode({"w": torch.zeros(size)}, sender="a", round_=1, num_samples=1, degree=1)


def bench_ring32(repeats: int) -> dict[str, float]:
    code = textwrap.dedent(
        """
        import asyncio, json, resource, sys, time
        sys.path.insert(0, sys.argv[1])
        from scripts.bench_wire import StaticTrainer, _configs
        from sim.fleet import Fleet, bind_loopback, wire_loopback
        from gossipfl.node.peer import Peer
        ids = [f"p{i}" for i in range(32)]
        neighbours = {f"p{i}": [f"p{(i - 1) % 32}", f"p{(i + 1) % 32}"] for i in range(32)}
        rounds = 5
        configs = _configs(ids, neighbours, "sync", rounds, {})
        sockets = bind_loopback(32)
        peers = [Peer(c, StaticTrainer(1_000_000, i), insecure=True, sock=s)
                 for i, (c, s) in enumerate(zip(wire_loopback(configs, sockets), sockets))]
        fleet = Fleet(peers, every=rounds)
        start = time.perf_counter()
        asyncio.run(fleet.run())
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"round_s": seconds / rounds, "peak_mb": peak}))
        """
    )
    root = str(Path(__file__).resolve().parent.parent)
    results = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def bench_network_engine(repeats: int) -> dict[str, float]:
    seconds, accuracy = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            sys.executable,
            "-m",
            "gossipfl",
            "sim",
            "--engine",
            "network",
            "--topology",
            "ring",
            "--peers",
            "8",
            "--rounds",
            "20",
            "--local-epochs",
            "1",
            "--dataset",
            "digits",
            "--quiet",
            "--out",
            str(Path(tmp) / "run"),
        ]
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            seconds.append(time.perf_counter() - start)
        rows = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        accuracy = json.loads(rows[-1])["test_accuracy"]
    return {"process_s": statistics.median(seconds), "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {"push_pull_10M": bench_push_pull(args.repeats)}
    print(json.dumps(results, indent=1), flush=True)
    results["ring32_1M"] = bench_ring32(max(1, args.repeats // 2))
    results["network_engine_ring8"] = bench_network_engine(max(1, args.repeats // 2))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
