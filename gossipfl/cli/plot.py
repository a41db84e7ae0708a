"""``gossipfl plot``: consensus, accuracy and communication curves of run directories."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="DIR", help="run directories")
    parser.add_argument("-o", "--output", type=Path, required=True, help="FILE.png, .svg or .pdf")
    parser.add_argument("--title", default="", help="figure title")


def run(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"{args.output}: the output must end in .png, .svg or .pdf")
    from sim.plots import plot_runs

    path = plot_runs(args.runs, args.output, args.title)
    print(f"wrote {path}")
    return 0
