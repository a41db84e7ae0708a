"""torch threads: one peer's local steps with 1 thread against torch's default pool.

    python scripts/bench_threads.py [--steps 1000] [--repeats 3] [--load N]

Each measurement is a fresh process running ``--steps`` local SGD steps of the built-in
peer (digits, MLP 64-64, batch 32), so torch's pool is set up exactly as a command would.
``--load N`` starts N busy processes first (default: one per core), standing in for the
other peers or jobs that share a machine's cores. Prints the median of ``--repeats`` runs
per thread count and the ratio default / one thread.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from gossipfl.threads import available_cores

STEPS = """
import sys, time, torch
from gossipfl.config import DataConfig, TrainConfig
from gossipfl.learning.trainer import build_trainer
threads = int(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
trainer = build_trainer("p0", DataConfig(dataset="digits"), TrainConfig(local_steps=int(sys.argv[2])))
trainer.fit(0)  # warm-up round, not timed
started = time.perf_counter()
trainer.fit(1)
print(time.perf_counter() - started)
"""

BUSY = "while True: pass"


def measure(threads: int, steps: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", STEPS, str(threads), str(steps)], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=int, default=available_cores(), help="busy processes alongside")
    args = parser.parse_args()
    load = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.load)]
    try:
        time.sleep(0.5)
        results: dict[str, list[float]] = {"1 thread": [], f"default ({available_cores()})": []}
        for _ in range(args.repeats):  # interleaved, so a change in load hits both alike
            for name, threads in (("1 thread", 1), (f"default ({available_cores()})", 0)):
                results[name].append(measure(threads, args.steps))
                print(f"  {name}: {results[name][-1]:.2f} s", flush=True)
    finally:
        for process in load:
            process.kill()
            process.wait()
    medians = {name: statistics.median(times) for name, times in results.items()}
    print(f"{args.steps} local steps of one peer, {args.load} busy processes alongside")
    for name, seconds in medians.items():
        print(f"  {name:12s} median {seconds:7.2f} s   runs {', '.join(f'{t:.2f}' for t in results[name])}")
    one, default = medians.values()
    print(f"  default / 1 thread: {default / one:.1f}x")


if __name__ == "__main__":
    main()
