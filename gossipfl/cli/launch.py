"""``gossipfl launch DIR``: every peer of a config directory, on this machine, in one process."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gossipfl.cli.options import add_threads_argument, flag_names, positive_int
from gossipfl.threads import PEER_THREADS

if TYPE_CHECKING:
    from gossipfl.config import GossipConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, help="peer configs from `gossipfl topology --out`")
    parser.add_argument("--rounds", type=int, help="override every peer's [train].rounds")
    parser.add_argument("--out", type=Path, help="run directory (metrics.jsonl for `gossipfl plot`)")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP even without [tls]")
    parser.add_argument("--eval-every", type=positive_int, default=1, help="rounds between snapshots")
    add_threads_argument(
        parser, f"{PEER_THREADS}: all peers share this process, so [runtime].threads is not used"
    )


def _matrix(graph: Any, gossip: GossipConfig) -> Any:
    """The mixing matrix the peers' algorithm mixes ``graph`` with (for the plots' λ₂)."""
    from topologies import mixing_matrix

    if gossip.algorithm == "pushsum":
        directed = graph if graph.is_directed() else graph.to_directed()
        return mixing_matrix(directed, "push-sum", make_lazy=gossip.lazy)
    return mixing_matrix(graph, gossip.mixing, make_lazy=gossip.lazy)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gossipfl import __version__
    from gossipfl.cli.export import TOPOLOGY_FILE
    from gossipfl.cli.peer import configure_logging, until_done_or_signal
    from gossipfl.config import load_peer_config
    from gossipfl.learning.trainer import build_trainer
    from gossipfl.threads import threads_for, using_threads
    from sim.fleet import Fleet, make_peers
    from sim.rundir import MetricsWriter, write_config
    from topologies import load_graph, second_eigenvalue_modulus

    paths = sorted(args.directory.glob("*.toml"))
    if not paths:
        raise ValueError(f"{args.directory}: no peer configs (*.toml)")
    configs = [load_peer_config(p) for p in paths]
    with flag_names(args):
        if args.rounds is not None:
            configs = [
                c.with_changes(train=dataclasses.replace(c.train, rounds=args.rounds)) for c in configs
            ]
        threads = threads_for(args.threads, PEER_THREADS)
    if args.out:
        configs = [c.with_changes(output_dir=args.out / "peers" / c.id) for c in configs]
    rounds = max(c.train.rounds for c in configs)
    configure_logging()
    logging.getLogger("gossipfl.node.peer").setLevel(logging.WARNING)
    trainers = [build_trainer(c.id, c.data, c.train) for c in configs]
    peers = make_peers(configs, trainers, insecure=args.insecure)
    bar = tqdm(total=rounds * len(peers), unit="peer-round", file=sys.stderr, dynamic_ncols=True)

    def tick() -> None:
        bar.update(1)

    fleet = Fleet(peers, args.eval_every, on_round=tick)
    started = time.perf_counter()
    try:
        with using_threads(threads, PEER_THREADS):
            asyncio.run(until_done_or_signal(fleet.run()))
    except asyncio.CancelledError:
        print("gossipfl launch: interrupted; every peer stopped, checkpoints kept", file=sys.stderr)
        return 130
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    accuracies = [p.last_accuracy for p in peers]
    print(
        f"{len(peers)} peers finished {rounds} rounds in {seconds:.1f}s (torch threads: {threads}); "
        f"test accuracy min/mean/max {min(accuracies):.4f} / "
        f"{sum(accuracies) / len(accuracies):.4f} / {max(accuracies):.4f}"
    )
    if args.out:
        graph_file = args.directory / TOPOLOGY_FILE
        stats = []
        if graph_file.is_file():
            graph = load_graph(graph_file)
            stats = [
                {
                    "name": args.directory.name,
                    "peers": graph.number_of_nodes(),
                    "lambda2": second_eigenvalue_modulus(_matrix(graph, configs[0].gossip)),
                }
            ]
        write_config(
            args.out,
            {
                "gossipfl_version": __version__,
                "command": sys.argv,
                "engine": "launch",
                "configs": [str(p) for p in paths],
                "topology_stats": stats,
            },
        )
        first = trainers[0]
        with MetricsWriter(args.out) as writer:
            for row in fleet.rows(
                first.models.model,
                first.x_test,
                first.y_test,
                algorithm=configs[0].gossip.algorithm,
                topology=args.directory.name,
            ):
                writer.write(row)
        print(f"wrote {args.out}/metrics.jsonl; plot it with: gossipfl plot {args.out} -o plot.png")
    return 0
