"""``gossipfl peer --config FILE``: run one peer until its rounds are done."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from gossipfl.cli.options import add_threads_argument, flag_names
from gossipfl.threads import PEER_THREADS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the peer's TOML config")
    parser.add_argument("--rounds", type=int, help="override [train].rounds")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument(
        "--insecure", action="store_true", help="plain HTTP without certificates (local simulation only)"
    )
    parser.add_argument("--out", type=Path, help="override output_dir")
    add_threads_argument(parser, f"[runtime].threads of the config, else {PEER_THREADS}")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


async def _run_peer(args: argparse.Namespace) -> None:
    import dataclasses

    from gossipfl.config import RuntimeConfig, load_peer_config
    from gossipfl.learning.trainer import build_trainer
    from gossipfl.node.peer import Peer
    from gossipfl.threads import using_threads

    config = load_peer_config(args.config)
    with flag_names(args):
        if args.rounds is not None:
            config = config.with_changes(train=dataclasses.replace(config.train, rounds=args.rounds))
        if args.threads != 0:  # 0 keeps the config's [runtime].threads
            config = config.with_changes(runtime=RuntimeConfig(threads=args.threads))
    if args.out:
        config = config.with_changes(output_dir=args.out)
    with using_threads(config.runtime.threads, PEER_THREADS) as threads:
        trainer = build_trainer(config.id, config.data, config.train)
        async with Peer(config, trainer, insecure=args.insecure, resume=args.resume) as peer:
            scheme = "http" if peer.tls is None else "https"
            logging.getLogger("gossipfl.node.peer").info(
                "%s serving on %s://%s:%d with %d neighbours (torch threads: %d)",
                peer.id,
                scheme,
                config.host,
                peer.port,
                peer.degree,
                threads,
            )
            await until_done_or_signal(peer.wait())


async def until_done_or_signal(work: Coroutine[Any, Any, None]) -> None:
    """Await ``work``; SIGINT/SIGTERM cancel it, so the caller's cleanup runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    configure_logging()
    try:
        asyncio.run(_run_peer(args))
    except asyncio.CancelledError:
        logging.getLogger("gossipfl.node.peer").info("stopped by signal; checkpoint kept")
        return 130
    return 0
