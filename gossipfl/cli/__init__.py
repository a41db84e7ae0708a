"""The ``gossipfl`` command line: one subcommand a module under ``gossipfl.cli``.

Only argparse is imported here; each subcommand imports torch, aiohttp or matplotlib inside
its ``run`` when it needs them, so ``gossipfl topology`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gossipfl import __version__
from gossipfl.errors import GossipError

# name -> one-line help; the module gossipfl.cli.<name> holds add_arguments and run.
COMMANDS = {
    "topology": "build a topology, summarise it, export peer configs, draw it",
    "sim": "simulate many peers on this machine against FedAvg and centralized training",
    "plot": "plot consensus, accuracy and communication curves of run directories",
    "certs": "create a network CA and one certificate per peer; wire them into the configs",
    "peer": "run one peer from its config file",
    "launch": "run every peer of a config directory on this machine",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gossipfl",
        description="Decentralized federated learning: peers gossip model weights with their "
        "graph neighbours; no central server.",
    )
    parser.add_argument("--version", action="version", version=f"gossipfl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"gossipfl.cli.{name.replace('-', '_')}")
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"gossipfl.cli.{args.command.replace('-', '_')}")
    try:
        code: int = module.run(args)
    except (GossipError, ValueError) as exc:
        # Bad input is the user's to fix: one line, no traceback.
        print(f"gossipfl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gossipfl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gossipfl {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
