"""Ring vs random graph vs hospital mesh vs FedAvg (and centralized SGD) on one dataset.

    python scripts/compare_topologies.py [--dataset digits] [--peers 32] [--out runs/compare]

Writes two run directories and their plots:
- OUT/train:     D-PSGD on each topology against FedAvg and centralized SGD, all on one
                 data split (Dirichlet label skew, alpha 0.5): accuracy vs rounds and bytes.
- OUT/consensus: pure averaging (lr 0) from independent initial models: consensus distance
                 per round beside the lambda_2^(2t) decay each topology's spectrum predicts.
Each step is an ordinary `gossipfl` command, printed before it runs.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from gossipfl.cli import main as gossipfl


def run(command: str) -> None:
    print(f"$ gossipfl {command}", flush=True)
    if gossipfl(shlex.split(command)) != 0:
        raise SystemExit(f"failed: gossipfl {command}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--peers", type=int, default=32, help="peers (a multiple of 4)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    args = parser.parse_args()
    topologies = f"--topology ring,random,hospital-mesh --peers {args.peers} --hospitals 4"
    train, consensus = args.out / "train", args.out / "consensus"
    run(
        f"sim {topologies} --baseline fedavg,central --dataset {args.dataset} "
        f"--partition dirichlet --alpha 0.5 --rounds {args.rounds} --out {train}"
    )
    run(f"plot {train} -o {args.out / 'train.png'} --title 'D-PSGD vs FedAvg on {args.dataset}'")
    run(
        f"sim {topologies} --dataset {args.dataset} --init independent --lr 0 --rounds 60 "
        f"--eval-every 2 --out {consensus}"
    )
    run(f"plot {consensus} -o {args.out / 'consensus.png'} --title 'Pure averaging: measured vs theory'")


if __name__ == "__main__":
    main()
