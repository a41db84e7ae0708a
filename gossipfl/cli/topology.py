"""``gossipfl topology``: build, summarise, export and draw a topology."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gossipfl.cli.options import (
    add_data_arguments,
    add_topology_arguments,
    add_train_arguments,
    data_config,
    kinds_help,
    topology_spec,
    train_config,
)
from gossipfl.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", help=kinds_help())
    add_topology_arguments(parser, peers_required=True)
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument(
        "--mixing",
        choices=("auto", "metropolis", "uniform", "push-sum"),
        default="auto",
        help="mixing rule for the spectral gap (auto: push-sum on directed graphs, else Metropolis–Hastings)",
    )
    parser.add_argument("--draw", type=Path, metavar="FILE.png", help="draw the graph to FILE")
    out = parser.add_argument_group("peer configs (with --out)")
    out.add_argument("--out", type=Path, metavar="DIR", help="write DIR/<id>.toml for each peer")
    out.add_argument("--host", default="127.0.0.1", help="listen host (default 127.0.0.1)")
    out.add_argument("--base-port", type=int, default=7000, help="first listen port (7000)")
    add_data_arguments(parser)
    add_train_arguments(parser, with_mode=True)


def run(args: argparse.Namespace) -> int:
    from topologies import build, summarize

    spec = topology_spec(args, args.kind)
    graph = build(spec)
    # Every peer's config is checked, --out or not, before anything is printed or written.
    parts = graph.number_of_nodes()
    data = [data_config(args, part, parts, spec.hospitals or 0) for part in range(parts)]
    train = train_config(args, TrainConfig())
    summary = summarize(graph, args.mixing)
    if args.json:
        print(json.dumps(summary))
    else:
        diameter = "inf (not connected)" if summary["diameter"] is None else summary["diameter"]
        print(
            f"{spec.name}: {summary['nodes']} nodes, {summary['edges']} edges"
            f"{' (directed)' if summary['directed'] else ''}\n"
            f"degree min/mean/max: {summary['degree_min']} / {summary['degree_mean']} / "
            f"{summary['degree_max']}\n"
            f"diameter: {diameter}\n"
            f"spectral gap: {summary['spectral_gap']:.6g}"
        )
    if args.out is not None:
        from gossipfl.cli.export import export_peer_configs

        paths = export_peer_configs(
            graph,
            args.out,
            host=args.host,
            base_port=args.base_port,
            data=lambda part, parts: data[part],
            train=train,
        )
        if not args.json:
            print(f"wrote {len(paths)} peer configs to {args.out}/")
    if args.draw is not None:
        from topologies.draw import draw

        draw(graph, args.draw, title=f"{spec.name}: {graph.number_of_nodes()} peers")
        if not args.json:
            print(f"drew {args.draw}")
    return 0
