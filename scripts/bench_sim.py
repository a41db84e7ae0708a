"""Simulator benchmarks (issue 3). Run: python scripts/bench_sim.py [--repeats 3] [--skip-10k]

1. 1,000 peers on a ring, MLP 64-64-10 on digits, 1 local step of batch 32, 100 rounds,
   evaluation every 10: total seconds, and time per round against the floor (one batched
   forward+backward of the same 32,000 samples through one MLP), measured in this run.
2. 10,000 peers of the same model in one process: peak memory and time per round (digits
   repeated 10 times with noise, loaded as a user .npz, so every peer holds a sample).
3. FedAvg, 128 clients, 20 rounds of 1 local epoch (batch 32, lr 0.1) on digits: the whole
   `gossipfl sim` process against the whole process of a plain torch script training the
   128 client models one after another (imports included in both).

Every figure is the median of --repeats runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# Benchmark the checkout this script belongs to, not whichever gossipfl is installed: run as
# `python scripts/bench_sim.py`, Python puts scripts/ first on sys.path, not the repository.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PLAIN_FEDAVG = textwrap.dedent(
    """
    import numpy as np, torch
    from torch import nn
    from sklearn.datasets import load_digits
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    test, train = order[:360], order[360:]
    xt, yt = torch.tensor(x[train]), torch.tensor(y[train])
    parts = np.array_split(np.random.default_rng(0).permutation(len(train)), 128)
    def mlp():
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    global_model = mlp()
    for _ in range(20):
        states, sizes = [], []
        for part in parts:
            model = mlp()
            model.load_state_dict(global_model.state_dict())
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            idx = torch.tensor(part)[torch.randperm(len(part))]
            for s in range(0, len(idx), 32):
                b = idx[s:s + 32]
                opt.zero_grad()
                nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
                opt.step()
            states.append(model.state_dict())
            sizes.append(len(part))
        total = sum(sizes)
        global_model.load_state_dict(
            {k: sum(s[k] * (n / total) for s, n in zip(states, sizes)) for k in states[0]}
        )
    acc = (global_model(torch.tensor(x[test])).argmax(1) == torch.tensor(y[test])).float().mean()
    print(f"plain fedavg accuracy {float(acc):.3f}")
    """
)


def _digits_times(copies: int, path: Path) -> str:
    """digits repeated ``copies`` times with a little noise, as a user .npz file: 10,000
    peers need more samples than digits' 1,797, and this keeps the same model and task."""
    import numpy as np

    from gossipfl.learning.datasets import load_dataset

    data = load_dataset("digits", test_fraction=0.01)
    rng = np.random.default_rng(0)
    x = np.concatenate([data.x_train + rng.normal(0, 0.05, data.x_train.shape) for _ in range(copies)])
    np.savez(path, X=x.astype(np.float32), y=np.tile(data.y_train, copies))
    return f"npz:{path}"


def _timed_loop(peers: int, rounds: int, eval_every: int) -> tuple[float, float]:
    """(total seconds with evaluation, median seconds of one round without it) for dpsgd on a
    ring of ``peers`` on digits."""
    from sim.config import DATASET_DEFAULTS, SimConfig
    from sim.runner import run_simulation
    from topologies.spec import TopologySpec

    train = dataclasses.replace(DATASET_DEFAULTS["digits"], rounds=rounds)
    config = SimConfig(topologies=(TopologySpec("ring", peers=peers),), train=train, eval_every=eval_every)
    start = time.perf_counter()
    rows = list(run_simulation(config, progress=False))
    total = time.perf_counter() - start
    assert rows[-1]["round"] == rounds
    return total, _timed_rounds(peers, rounds, "digits")


def _timed_rounds(peers: int, rounds: int, dataset: str) -> float:
    """Median seconds of one dpsgd round on a ring, timed between the engine's per-round
    callbacks, so evaluation (at round 0 and the end only) is left out."""
    import torch

    from gossipfl.learning.datasets import load_dataset
    from gossipfl.learning.partition import partition
    from sim.config import DATASET_DEFAULTS, SimConfig
    from sim.runner import _RETAIN_LIMIT, _reuse_freed_memory
    from sim.task import make_task
    from sim.vectorized import run_vectorized
    from topologies import ring
    from topologies.spec import TopologySpec

    train = dataclasses.replace(DATASET_DEFAULTS["digits"], rounds=rounds)
    config = SimConfig(
        topologies=(TopologySpec("ring", peers=peers),), dataset=dataset, train=train, eval_every=10 * rounds
    )
    data = load_dataset(dataset)
    task = make_task(data, train, 0, torch.device("cpu"))
    if peers * sum(p.numel() for p in task.new_model().parameters()) <= _RETAIN_LIMIT:
        _reuse_freed_memory()  # as run_simulation decides
    parts = partition(data.y_train, peers, "iid", 0)
    stamps: list[float] = []
    for _ in run_vectorized(
        config, task, "dpsgd", "ring", ring(peers), parts, lambda: stamps.append(time.perf_counter())
    ):
        pass
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


def _floor(samples: int) -> float:
    """Seconds for one forward+backward of ``samples`` digits through one MLP 64-64-10."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = torch.randn(samples, 64), torch.randint(0, 10, (samples,))
    times = []
    for _ in range(20):
        start = time.perf_counter()
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


def bench_1000(repeats: int) -> dict[str, float]:
    totals, per_round, floors = [], [], []
    for _ in range(repeats):
        total, round_s = _timed_loop(1000, 100, 10)
        totals.append(total)
        per_round.append(round_s)
        floors.append(_floor(32_000))
    round_s, floor = statistics.median(per_round), statistics.median(floors)
    return {
        "total_s": statistics.median(totals),
        "round_s": round_s,
        "floor_s": floor,
        "ratio_to_floor": round_s / floor,
    }


def bench_10k(repeats: int) -> dict[str, float]:
    """Two fresh processes a repeat: one runs the simulation as `gossipfl sim` would (peak
    memory, total seconds), the other times rounds; each peak belongs to one run alone."""
    code = textwrap.dedent(
        """
        import dataclasses, json, resource, sys, time
        from pathlib import Path
        sys.path.insert(0, sys.argv[1])
        from scripts.bench_sim import _digits_times, _timed_rounds
        dataset = _digits_times(10, Path(sys.argv[2]) / "digits10.npz")
        if sys.argv[3] == "peak":
            from sim.config import DATASET_DEFAULTS, SimConfig
            from sim.runner import run_simulation
            from topologies.spec import TopologySpec
            train = dataclasses.replace(DATASET_DEFAULTS["digits"], rounds=10)
            config = SimConfig(topologies=(TopologySpec("ring", peers=10_000),), dataset=dataset,
                               train=train, eval_every=10)
            start = time.perf_counter()
            list(run_simulation(config, progress=False))
            result = {"total_s": time.perf_counter() - start}
        else:
            result = {"round_s": _timed_rounds(10_000, 10, dataset)}
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        """
    )
    root = str(ROOT)
    peaks, totals, rounds = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for mode in ("peak", "rounds"):
                out = subprocess.run(
                    [sys.executable, "-c", code, root, tmp, mode], capture_output=True, text=True, check=True
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                if mode == "peak":
                    peaks.append(result["peak_mb"])
                    totals.append(result["total_s"])
                else:
                    rounds.append(result["round_s"])
    return {
        "peak_mb": statistics.median(peaks),
        "total_s_10_rounds": statistics.median(totals),
        "round_s": statistics.median(rounds),
    }


def _process_seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start


def bench_fedavg(repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain_fedavg.py"
        plain.write_text(PLAIN_FEDAVG)
        ours_argv = [
            sys.executable,
            "-m",
            "gossipfl",
            "sim",
            "--algorithm",
            "none",
            "--baseline",
            "fedavg",
            "--peers",
            "128",
            "--rounds",
            "20",
            "--local-epochs",
            "1",
            "--batch-size",
            "32",
            "--lr",
            "0.1",
            "--dataset",
            "digits",
            "--eval-every",
            "20",
            "--quiet",
            "--out",
            str(Path(tmp) / "run"),
        ]
        ours, theirs = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine load
            ours.append(_process_seconds(ours_argv))
            theirs.append(_process_seconds([sys.executable, str(plain)]))
        rows = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        accuracy = json.loads(rows[-1])["test_accuracy"]
    return {
        "gossipfl_s": statistics.median(ours),
        "plain_script_s": statistics.median(theirs),
        "speedup": statistics.median(theirs) / statistics.median(ours),
        "gossipfl_accuracy": accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-10k", action="store_true")
    args = parser.parse_args()
    results = {"peers_1000": bench_1000(args.repeats)}
    print(json.dumps(results, indent=1), flush=True)
    if not args.skip_10k:
        results["peers_10000"] = bench_10k(args.repeats)
        print(json.dumps(results["peers_10000"], indent=1), flush=True)
    results["fedavg_128"] = bench_fedavg(args.repeats)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
