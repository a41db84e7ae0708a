"""``gossipfl sim``: many peers on this machine, against FedAvg and centralized training."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gossipfl.cli.options import (
    add_data_arguments,
    add_threads_argument,
    add_topology_arguments,
    add_train_arguments,
    flag_names,
    kinds_help,
    topology_spec,
    train_config,
)
from gossipfl.rules import RULES
from sim.config import BASELINES, ENGINES, INITS, MIXINGS


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topology",
        type=_names,
        default=(),
        help=f"comma-separated topologies, each {kinds_help()}; all runs share one data split",
    )
    add_topology_arguments(parser, peers_required=False)
    parser.add_argument(
        "--algorithm",
        type=_names,
        default=("dpsgd",),
        help="comma-separated: dpsgd (synchronous D-PSGD), pushsum (directed graphs), gossip "
        "(asynchronous pairwise gossip learning); 'none' for baselines only",
    )
    parser.add_argument(
        "--baseline",
        type=_names,
        default=(),
        help="comma-separated: " + ", ".join(f"{name} ({label})" for name, label in BASELINES.items()),
    )
    add_data_arguments(parser)
    add_train_arguments(parser, with_mode=False)
    s = parser.add_argument_group("simulation")
    s.add_argument(
        "--init",
        choices=tuple(INITS),
        default="shared",
        help="; ".join(f"{name}: {what}" for name, what in INITS.items()) + " (default shared)",
    )
    s.add_argument(
        "--mixing",
        choices=MIXINGS,
        default="auto",
        help="mixing weights for dpsgd (auto: Metropolis–Hastings)",
    )
    s.add_argument("--lazy", action="store_true", help="use the lazy mixing matrix (I+W)/2")
    s.add_argument(
        "--rule", default="mean", help=f"combine rule, one of {', '.join(RULES)} (default mean)"
    )
    s.add_argument(
        "--partition-file",
        type=Path,
        help="your own split: JSON {peer id: [sample indices]} or a list of index lists in node order",
    )
    s.add_argument(
        "--dropout-prob",
        type=float,
        default=0.0,
        help="probability that a peer misses a round (neither trains nor gossips)",
    )
    s.add_argument(
        "--client-fraction", type=float, default=1.0, help="fedavg: fraction of clients sampled per round"
    )
    s.add_argument("--eval-every", type=int, help="rounds between evaluations")
    s.add_argument(
        "--device", default="cpu", help="cpu, cuda (the CPU when there is no GPU) or cuda:N (that GPU)"
    )
    s.add_argument(
        "--engine",
        choices=tuple(ENGINES),
        default="vectorized",
        help="; ".join(f"{name}: {what}" for name, what in ENGINES.items()),
    )
    add_threads_argument(parser, "every core for the vectorized engine, 1 for the network engine")
    s.add_argument("--out", type=Path, required=True, help="run directory to write")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from sim.config import DATASET_DEFAULTS, FILE_DEFAULTS, SimConfig
    from sim.runner import run_simulation

    base = DATASET_DEFAULTS.get(args.dataset, FILE_DEFAULTS)
    train = train_config(args, dataclasses.replace(base, rounds=100))
    algorithms = () if args.algorithm == ("none",) else args.algorithm
    with flag_names(args):
        config = SimConfig(
            topologies=tuple(topology_spec(args, kind) for kind in args.topology),
            algorithms=algorithms,
            baselines=args.baseline,
            dataset=args.dataset,
            partition=args.partition,
            partition_file=args.partition_file,
            alpha=args.alpha,
            label=args.label,
            train=train,
            init=args.init,
            mixing=args.mixing,
            lazy=args.lazy,
            rule=args.rule,
            dropout_prob=args.dropout_prob,
            client_fraction=args.client_fraction,
            eval_every=max(1, train.rounds // 20) if args.eval_every is None else args.eval_every,
            seed=args.seed,
            device=args.device,
            engine=args.engine,
            out=args.out,
            clients=args.peers,
            threads=args.threads,
        )
    last: dict[str, dict[str, object]] = {}
    for row in run_simulation(config, progress=not args.quiet):
        last[f"{row['algorithm']}/{row['topology']}"] = row
    for name, row in last.items():
        print(
            f"{name:24s} round {row['round']:>5}  test acc {row['test_accuracy']:.4f}  "
            f"consensus {row['consensus_distance'] if row['consensus_distance'] is not None else '-'}"
        )
    print(f"wrote {args.out}/metrics.jsonl; plot it with: gossipfl plot {args.out} -o plot.png")
    return 0
