"""Flag groups shared by several subcommands, and their translation into config values."""

from __future__ import annotations

import argparse
import dataclasses

from gossipfl.config import MODELS, MODES, PARTITIONS, DataConfig, TrainConfig, check_dataset
from topologies.spec import KINDS, TopologySpec

__all__ = [
    "add_data_arguments",
    "add_topology_arguments",
    "add_train_arguments",
    "data_config",
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


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected widths like 64,64, got {text!r}") from exc
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected positive widths like 64,64, got {text!r}")
    return widths


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
    g.add_argument(
        "--dataset",
        default="digits",
        type=_dataset,
        help="iris, digits, breast-cancer, mnist1d, synthetic, npz:PATH or csv:PATH",
    )
    g.add_argument("--partition", choices=PARTITIONS, default="iid", help="how data is split")
    g.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew concentration")
    g.add_argument("--label", default="label", help="csv: the label column's name")


def _dataset(text: str) -> str:
    try:
        return check_dataset(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def data_config(args: argparse.Namespace, part: int, parts: int, hospitals: int = 0) -> DataConfig:
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
    g.add_argument("--model", choices=MODELS, help="logreg, mlp or cnn (default mlp)")
    g.add_argument("--hidden", type=_hidden, help="MLP widths, e.g. 64,64")
    g.add_argument("--rounds", type=positive_int, help="gossip rounds")
    g.add_argument("--local-steps", type=positive_int, help="SGD steps per round")
    g.add_argument("--local-epochs", type=positive_int, help="local epochs per round")
    g.add_argument("--lr", type=_non_negative_float, help="learning rate")
    g.add_argument("--batch-size", type=positive_int, help="minibatch size")
    g.add_argument("--momentum", type=_non_negative_float, help="SGD momentum (default 0)")
    if with_mode:
        g.add_argument("--mode", choices=MODES, default="sync", help="sync rounds or async")


def train_config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """``base`` with every training flag the user actually gave laid over it."""
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
    return dataclasses.replace(base, **changes)
