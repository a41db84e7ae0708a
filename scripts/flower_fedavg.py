"""Flower's side of scripts/bench_flower.py: FedAvg on digits in Flower's simulation runtime.

Run it with the python of a virtual environment that has Flower, never the project's:

    /work/venvs/flower/bin/python scripts/flower_fedavg.py --clients 128 --rounds 20

It imports nothing from gossipfl (Flower is not a project dependency and gossipfl is not
installed next to it), so it rebuilds gossipfl's digits task by hand: scikit-learn's bundled
digits, a seeded 20 % test split, features standardised with the training split's statistics,
an IID split into parts whose sizes differ by at most one, MLP 64-64-10, one local epoch of
plain SGD (batch 32) per round, every client training every round, the server replacing the
global model by the sample-weighted mean and evaluating it on the test set after every round.

Prints one JSON line: the seconds of the ``run_simulation`` call (Ray start, actors, rounds,
shutdown), the seconds of the rounds alone (``FedAvg.start``), the final test accuracy, the
client split sizes, a digest of the data and split, and the thread settings of the server
and the clients.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from sklearn.datasets import load_digits
from torch import nn


def digits_task(
    seed: int, clients: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """(x_train, y_train, x_test, y_test, client index arrays), split as gossipfl splits digits."""
    x, y = load_digits(return_X_y=True)  # the copy bundled with scikit-learn: no download
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, round(len(x) * 0.2))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    x = ((x - mean) / std).astype(np.float32)
    parts = [np.sort(p) for p in np.array_split(np.random.default_rng(seed).permutation(len(train)), clients)]
    return x[train], y[train].astype(np.int64), x[test], y[test].astype(np.int64), parts


def digest(arrays: list[np.ndarray]) -> str:
    """sha256 of the task's arrays, so the benchmark can check both sides train on the same split."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def thread_settings() -> dict[str, Any]:
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server and every client")
    parser.add_argument(
        "--cpus-per-client",
        type=float,
        default=1.0,
        help="Ray CPUs reserved per client: machine CPUs / this = clients trained at once",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test, parts = digits_task(args.seed, args.clients)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    x_eval, y_eval = torch.from_numpy(x_test), torch.from_numpy(y_test)
    client_threads: dict[str, Any] = {}

    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(args.threads)
        part = torch.tensor(parts[int(context.node_config["partition-id"])])
        model = mlp()
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=float(str(msg.content.config_records["config"]["lr"])))
        loss = 0.0
        for _ in range(args.local_epochs):
            idx = part[torch.randperm(len(part))]
            for start in range(0, len(idx), args.batch_size):
                batch = idx[start : start + args.batch_size]
                opt.zero_grad()
                batch_loss = nn.functional.cross_entropy(model(xt[batch]), yt[batch])
                batch_loss.backward()
                opt.step()
                loss = batch_loss.item()
        metrics = MetricRecord(
            {"train_loss": loss, "num-examples": len(part), "threads": torch.get_num_threads()}
        )
        return Message(
            RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg
        )

    server_app = ServerApp()
    timings: dict[str, float] = {}
    accuracies: list[float] = []

    def evaluate(round_: int, arrays: ArrayRecord) -> MetricRecord:
        model = mlp()
        model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            accuracy = float((model(x_eval).argmax(1) == y_eval).float().mean())
        accuracies.append(accuracy)
        return MetricRecord({"accuracy": accuracy})

    @server_app.main()
    def server_main(grid: Grid, context: Context) -> None:
        torch.manual_seed(args.seed)
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,  # evaluation is central, on the server, as in gossipfl
            min_train_nodes=args.clients,
            min_available_nodes=args.clients,
        )
        start = time.perf_counter()
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(mlp().state_dict()),
            num_rounds=args.rounds,
            train_config=ConfigRecord({"lr": args.lr}),
            evaluate_fn=evaluate,
        )
        timings["rounds_s"] = time.perf_counter() - start
        last = result.train_metrics_clientapp.get(args.rounds)
        client_threads["torch_threads_mean"] = None if last is None else last["threads"]

    logging.getLogger("flwr").setLevel(logging.WARNING)
    start = time.perf_counter()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=args.clients,
        backend_config={"client_resources": {"num_cpus": args.cpus_per_client, "num_gpus": 0.0}},
    )
    run_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "run_simulation_s": run_s,
                "rounds_s": timings.get("rounds_s"),
                "test_accuracy": accuracies[-1] if accuracies else None,
                "evaluations": len(accuracies),
                "part_sizes": [len(p) for p in parts],
                "data_sha256": digest(
                    [x_train, y_train, x_test, y_test, *(p.astype(np.int64) for p in parts)]
                ),
                "server_threads": thread_settings(),
                "client_threads": client_threads,
                "flwr_version": __import__("flwr").__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
