"""Flag groups shared by several subcommands, and their translation into config values."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from gossipfl.config import MODES, DataConfig, TrainConfig
from gossipfl.errors import ConfigError
from gossipfl.learning.datasets import DATASETS, FILE_FORMATS
from gossipfl.learning.models import MODELS
from gossipfl.learning.partition import PARTITIONS
from topologies.spec import KINDS, TopologySpec

__all__ = [
    "add_data_arguments",
    "add_threads_argument",
    "add_topology_arguments",
    "add_train_arguments",
    "data_config",
    "flag_names",
    "kinds_help",
    "positive_int",
    "topology_spec",
    "train_config",
]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _hidden(text: str) -> tuple[int, ...]:
    # Only the format is checked here; TrainConfig checks the widths themselves.
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected widths like 64,64, got {text!r}") from exc
    if not widths:
        raise argparse.ArgumentTypeError(f"expected widths like 64,64, got {text!r}")
    return widths


@contextmanager
def flag_names(args: argparse.Namespace) -> Iterator[None]:
    """Re-raise a config dataclass's refusal under its flag's name (``--local-steps``) where
    the command has that flag; the checks themselves are the dataclass's."""
    try:
        yield
    except ConfigError as exc:
        # A list-valued field (algorithms) has a singular flag (--algorithm).
        names = [name for name in (exc.field, (exc.field or "")[:-1]) if name and hasattr(args, name)]
        if not names:
            raise
        raise ConfigError(exc.problem, "--" + names[0].replace("_", "-")) from exc


def add_threads_argument(parser: argparse.ArgumentParser, automatic: str) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help=f"torch compute threads (default 0: automatic, {automatic})",
    )


def add_topology_arguments(parser: argparse.ArgumentParser, *, peers_required: bool) -> None:
    g = parser.add_argument_group("topology")
    g.add_argument(
        "--peers",
        type=positive_int,
        required=False,
        help="number of peers" + (" (required except for hospital-mesh)" if peers_required else ""),
    )
    g.add_argument("--seed", type=int, default=0, help="seed for random graphs and data splits")
    g.add_argument("--p", type=float, help="random: edge probability (default 2 ln(n)/n)")
    g.add_argument("--degree", type=int, default=4, help="random-regular: degree (default 4)")
    g.add_argument("--k", type=int, default=4, help="small-world: ring neighbours (default 4)")
    g.add_argument("--rewire", type=float, default=0.1, help="small-world: rewiring probability")
    g.add_argument("--hospitals", type=positive_int, help="hospital-mesh: number of hospitals")
    g.add_argument("--nodes-per-hospital", type=positive_int, help="hospital-mesh: nodes each")
    g.add_argument(
        "--links-per-hospital",
        type=positive_int,
        default=2,
        help="hospital-mesh: gateway links per hospital (default 2)",
    )


def topology_spec(args: argparse.Namespace, kind: str) -> TopologySpec:
    return TopologySpec(
        kind=kind,
        peers=args.peers,
        seed=args.seed,
        p=args.p,
        degree=args.degree,
        k=args.k,
        rewire=args.rewire,
        hospitals=args.hospitals,
        nodes_per_hospital=args.nodes_per_hospital,
        links_per_hospital=args.links_per_hospital,
    )


def kinds_help() -> str:
    return f"one of {', '.join(KINDS)}, or a graph file (.edges, .json, .graphml)"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    files = ", ".join(f"{kind}:PATH" for kind in FILE_FORMATS)
    g.add_argument("--dataset", default="digits", help=f"{', '.join(DATASETS)}, or a file: {files}")
    g.add_argument("--partition", choices=tuple(PARTITIONS), default="iid", help="how data is split")
    g.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew concentration")
    g.add_argument("--label", default="label", help="csv: the label column's name")


def data_config(args: argparse.Namespace, part: int, parts: int, hospitals: int = 0) -> DataConfig:
    with flag_names(args):
        return DataConfig(
            dataset=args.dataset,
            partition=args.partition,
            part=part,
            parts=parts,
            seed=args.seed,
            alpha=args.alpha,
            hospitals=hospitals,
            label=args.label,
        )


def add_train_arguments(parser: argparse.ArgumentParser, *, with_mode: bool) -> None:
    """Training flags; defaults of None mean 'the dataset's sensible default'."""
    g = parser.add_argument_group("training")
    g.add_argument("--model", choices=tuple(MODELS), help=f"{', '.join(MODELS)} (default mlp)")
    g.add_argument("--hidden", type=_hidden, help="MLP widths, e.g. 64,64")
    g.add_argument("--rounds", type=int, help="gossip rounds")
    g.add_argument("--local-steps", type=int, help="SGD steps per round")
    g.add_argument("--local-epochs", type=int, help="local epochs per round")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--batch-size", type=int, help="minibatch size")
    g.add_argument("--momentum", type=float, help="SGD momentum, in [0, 1) (default 0)")
    if with_mode:
        g.add_argument("--mode", choices=MODES, default="sync", help=f"{' or '.join(MODES)} rounds")


def train_config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """``base`` with every training flag the user actually gave laid over it (and checked)."""
    given = {
        "model": args.model,
        "hidden": args.hidden,
        "rounds": args.rounds,
        "local_steps": args.local_steps,
        "local_epochs": args.local_epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "momentum": args.momentum,
        "mode": getattr(args, "mode", None),
        "seed": args.seed,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    with flag_names(args):
        return dataclasses.replace(base, **changes)
