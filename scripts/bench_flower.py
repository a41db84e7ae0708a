"""gossipfl's FedAvg simulation against Flower's, side by side (issue 7, Performance).

    python scripts/bench_flower.py --flower-python /work/venvs/flower/bin/python [--repeats 3]

The run: FedAvg, 128 clients, every client every round, 20 rounds of 1 local epoch of SGD
(batch 32, lr 0.1, no momentum) on digits (scikit-learn's bundled copy, 20 % held out,
IID split), MLP 64-64-10, the global model evaluated on the test set after every round.
gossipfl runs it as ``gossipfl sim --baseline fedavg --algorithm none --peers 128 --dataset
digits --rounds 20 --local-epochs 1`` (the dataset's defaults give the model, lr and batch);
Flower runs scripts/flower_fedavg.py in its own virtual environment (Flower is never a
project dependency; without ``--flower-python`` this prints a skip note and exits 0).

Two times on each side, each repeat alternating which side goes first:
- run: in-process seconds of the run, imports excluded. gossipfl: the ``gossipfl sim``
  command called in a process that has already imported torch and the simulator (so it
  includes loading digits, a few ms, and writing the run directory). Flower: the
  ``flwr.simulation.run_simulation`` call (Ray start, client actors, rounds, shutdown).
  The rounds alone (gossipfl's ``elapsed_s``, Flower's ``FedAvg.start``) are printed too.
- process: wall seconds of the whole process, from exec to exit, imports included.
  gossipfl: ``python -m gossipfl sim ...``; Flower: ``python scripts/flower_fedavg.py``.

Threads: every process of both sides (and Flower's Ray workers, which inherit the
environment) runs with OMP_NUM_THREADS=MKL_NUM_THREADS=--threads (default 1), and both
scripts check torch.get_num_threads() equals it. Flower reserves --cpus-per-client Ray CPUs
per client (default 1, so on a 2-core machine two clients train at once); gossipfl runs in
one process, one thread. Both sides must train on byte-identical data and split (checked by
a digest) and end at similar accuracy (printed, and flagged if they differ by more than 0.05).

Figures are medians of --repeats runs; the machine is shared, so the 1-minute load average
before each run is printed next to it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_RUN, TARGET_PROCESS = 50.0, 15.0

# Imports first, then the clock: the same argv the whole-process run gets, called in-process.
IN_PROCESS = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    import torch
    import sim.runner, sim.vectorized, sim.config, gossipfl.cli.sim
    from gossipfl.cli import main
    start = time.perf_counter()
    code = main(json.loads(sys.argv[2]))
    run_s = time.perf_counter() - start
    if code:
        sys.exit(code)
    print(json.dumps({"code": code, "run_s": run_s, "torch_threads": torch.get_num_threads()}))
    """
)


def gossipfl_argv(clients: int, rounds: int, out: Path) -> list[str]:
    return [
        "sim",
        "--baseline",
        "fedavg",
        "--algorithm",
        "none",
        "--peers",
        str(clients),
        "--dataset",
        "digits",
        "--rounds",
        str(rounds),
        "--local-epochs",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]


def gossipfl_digest(clients: int) -> tuple[str, list[int]]:
    """Digest of the data and split gossipfl trains on (as flower_fedavg.py computes it)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from gossipfl.learning.datasets import load_dataset
    from gossipfl.learning.partition import partition

    data = load_dataset("digits")
    parts = partition(data.y_train, clients, "iid", 0)
    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test, *(p.astype(np.int64) for p in parts)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest(), [len(p) for p in parts]


def gossipfl_revision() -> str:
    """The commit measured, marked dirty when the package has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gossipfl", "sim", "topologies"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return (
        head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
        if head.returncode == 0
        else "unknown"
    )


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of one process; a failing process stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{argv[:3]} failed with status {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def last_json(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def run_gossipfl(clients: int, rounds: int, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    out = tmp / "gossipfl_run"
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    _, stdout = timed(
        [sys.executable, "-c", IN_PROCESS, str(ROOT), json.dumps(gossipfl_argv(clients, rounds, out))], env
    )
    inproc = last_json(stdout)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(out)
    process_s, _ = timed([sys.executable, "-m", "gossipfl", *gossipfl_argv(clients, rounds, out)], env)
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return {
        "run_s": inproc["run_s"],
        "rounds_s": rows[-1]["elapsed_s"],
        "process_s": process_s,
        "accuracy": last["test_accuracy"],
        "evaluations": len(rows),
        "torch_threads": inproc["torch_threads"],
        "load": load,
    }


def run_flower(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    load = os.getloadavg()[0]
    argv = [
        args.flower_python,
        str(ROOT / "scripts" / "flower_fedavg.py"),
        "--clients",
        str(args.clients),
        "--rounds",
        str(args.rounds),
        "--threads",
        str(args.threads),
        "--cpus-per-client",
        str(args.cpus_per_client),
    ]
    process_s, stdout = timed(argv, env)
    result = last_json(stdout)
    return {
        "run_s": result["run_simulation_s"],
        "rounds_s": result["rounds_s"],
        "process_s": process_s,
        "accuracy": result["test_accuracy"],
        "evaluations": result["evaluations"],
        "torch_threads": result["server_threads"]["torch_threads"],
        "client_torch_threads": result["client_threads"]["torch_threads_mean"],
        "data_sha256": result["data_sha256"],
        "part_sizes": result["part_sizes"],
        "flwr_version": result["flwr_version"],
        "load": load,
    }


def flower_usable(python: str | None) -> str | None:
    """Why Flower's side cannot run, or None when it can."""
    if not python:
        return "no --flower-python given"
    if not Path(python).is_file():
        return f"--flower-python {python} does not exist"
    probe = subprocess.run([python, "-c", "import flwr, ray, torch, sklearn"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (
            f"{python} cannot import flwr, ray, torch and sklearn: {probe.stderr.strip().splitlines()[-1:]}"
        )
    return None


def show(side: str, i: int, r: dict[str, Any]) -> None:
    print(
        f"  {side:8s} #{i}: run {r['run_s']:8.2f} s  rounds {r['rounds_s']:8.2f} s  "
        f"process {r['process_s']:8.2f} s  accuracy {r['accuracy']:.4f}  "
        f"(load {r['load']:.1f} before)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flower-python", help="python of a virtual environment with flwr[simulation]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of every process")
    parser.add_argument("--cpus-per-client", type=float, default=1.0, help="Flower: Ray CPUs per client")
    args = parser.parse_args()
    why = flower_usable(args.flower_python)
    if why is not None:
        print(f"bench_flower: skipped, {why}. Flower is optional and never a project dependency; see")
        print("this script's docstring for the virtual environment it needs.")
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    digest, sizes = gossipfl_digest(args.clients)
    revision = gossipfl_revision()
    print(
        f"FedAvg, {args.clients} clients, {args.rounds} rounds, digits, 1 local epoch, batch 32, lr 0.1; "
        f"OMP_NUM_THREADS=MKL_NUM_THREADS={args.threads} everywhere, Flower {args.cpus_per_client} Ray CPU "
        f"per client on {os.cpu_count()} CPUs",
        flush=True,
    )
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            # Alternate who goes first, so neither side always meets the other's leftovers.
            order = ("gossipfl", "flower") if i % 2 == 0 else ("flower", "gossipfl")
            for side in order:
                if side == "gossipfl":
                    ours.append(run_gossipfl(args.clients, args.rounds, env, Path(tmp)))
                    show(side, i, ours[-1])
                else:
                    theirs.append(run_flower(args, env))
                    show(side, i, theirs[-1])
    problems = []
    if theirs[0]["data_sha256"] != digest or theirs[0]["part_sizes"] != sizes:
        problems.append("the two sides did not train on the same data split")
    threads = {r["torch_threads"] for r in ours + theirs} | {round(r["client_torch_threads"]) for r in theirs}
    if threads != {args.threads}:
        problems.append(f"torch thread counts differ from {args.threads}: {sorted(threads)}")
    if (
        abs(statistics.median(r["accuracy"] for r in ours) - statistics.median(r["accuracy"] for r in theirs))
        > 0.05
    ):
        problems.append("final accuracies differ by more than 0.05")
    if {r["evaluations"] for r in ours + theirs} != {args.rounds + 1}:
        problems.append(f"not every side evaluated at round 0 and after each of {args.rounds} rounds")

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)

    summary = {
        "gossipfl_revision": revision,
        "flwr_version": theirs[0]["flwr_version"],
        "repeats": args.repeats,
        "threads": args.threads,
        "flower_cpus_per_client": args.cpus_per_client,
        "cpus": os.cpu_count(),
        "same_data_split": theirs[0]["data_sha256"] == digest,
        "gossipfl": {k: med(ours, k) for k in ("run_s", "rounds_s", "process_s", "accuracy")},
        "flower": {k: med(theirs, k) for k in ("run_s", "rounds_s", "process_s", "accuracy")},
    }
    summary["ratio_run"] = summary["flower"]["run_s"] / summary["gossipfl"]["run_s"]
    summary["ratio_rounds"] = summary["flower"]["rounds_s"] / summary["gossipfl"]["rounds_s"]
    summary["ratio_process"] = summary["flower"]["process_s"] / summary["gossipfl"]["process_s"]
    print(json.dumps(summary, indent=1))
    print(
        f"run: gossipfl {summary['gossipfl']['run_s']:.2f} s, Flower {summary['flower']['run_s']:.2f} s, "
        f"{summary['ratio_run']:.1f}x (target >= {TARGET_RUN:.0f}x: "
        f"{'met' if summary['ratio_run'] >= TARGET_RUN else 'NOT met'})"
    )
    print(
        f"process: gossipfl {summary['gossipfl']['process_s']:.2f} s, Flower "
        f"{summary['flower']['process_s']:.2f} s, {summary['ratio_process']:.1f}x (target >= "
        f"{TARGET_PROCESS:.0f}x: {'met' if summary['ratio_process'] >= TARGET_PROCESS else 'NOT met'})"
    )
    accuracy = summary["gossipfl"]["accuracy"], summary["flower"]["accuracy"]
    print(f"accuracy: gossipfl {accuracy[0]:.4f}, Flower {accuracy[1]:.4f}")
    for problem in problems:
        print(f"UNFAIR COMPARISON: {problem}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
