"""The simulator from Python with a user's model, loss, data and partition; the CLI's
partition file; combinations refused before anything runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gossipfl.cli import main
from sim.api import simulate


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    return (centres[y] + rng.normal(0, 0.5, (n, 2))).astype(np.float32), y


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_user_model_data_loss_and_partition_give_a_cli_run_directory(tmp_path: Path) -> None:
    x, y = blobs()
    calls = []

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return nn.functional.cross_entropy(outputs, targets, reduction="none")

    # Label skew by hand: peer p0 holds only class 0 (of the first 200 samples), and so on.
    partition = {f"p{c}": [int(i) for i in np.flatnonzero(y[:200] == c)] for c in range(3)}
    partition["p3"] = list(range(200, 240))
    out = tmp_path / "run"
    rows = simulate(
        topology="ring",
        peers=4,
        model=Tiny(),
        loss_fn=loss,
        data=(x[:240], y[:240], x[:60], y[:60]),
        partition=partition,
        rounds=30,
        lr=0.2,
        batch_size=8,
        eval_every=10,
        out=out,
    )
    assert calls and [r["round"] for r in rows] == [0, 10, 20, 30]
    assert rows[-1]["test_accuracy"] > 0.9
    written = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in written] == [0, 10, 20, 30]
    config = json.loads((out / "config.json").read_text())
    assert config["python_model"] == "Tiny" and config["sim"]["dataset"] == "python"
    assert json.loads((out / "partition.json").read_text())["p0"] == partition["p0"]
    assert main(["plot", str(out), "-o", str(tmp_path / "p.png")]) == 0


def test_partition_file_on_the_cli(tmp_path: Path) -> None:
    split = {f"p{i}": list(range(i * 50, (i + 1) * 50)) for i in range(4)}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    out = tmp_path / "run"
    args = ["sim", "--topology", "ring", "--peers", "4", "--dataset", "iris", "--rounds", "2"]
    assert main([*args, "--partition-file", str(path), "--out", str(out), "--quiet"]) == 2  # iris has 120
    split = {f"p{i}": list(range(i * 30, (i + 1) * 30)) for i in range(4)}
    path.write_text(json.dumps(split))
    assert main([*args, "--partition-file", str(path), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["sim"]["partition_file"] == str(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{", "not a JSON partition"),
        ('{"p0": [0], "p1": [1], "p2": [2]}', "missing"),
        ('{"p0": [0], "p1": [1], "p2": [2], "p3": [2]}', "more than one peer"),
        ('{"p0": [0], "p1": [1], "p2": [2], "p3": [9999]}', "indices must be in"),
        ('{"p0": [0], "p1": [1], "p2": [2], "p3": []}', "holds no samples"),
        ('{"p0": ["a"], "p1": [1], "p2": [2], "p3": [3]}', "list of sample indices"),
        ("[" * 100_000, "not a JSON partition"),
    ],
)
def test_bad_partition_files_name_the_file_and_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = tmp_path / "run"
    args = ["sim", "--topology", "ring", "--peers", "4", "--dataset", "iris", "--rounds", "1", "--quiet"]
    assert main([*args, "--partition-file", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and problem in err and "Traceback" not in err


def test_a_bad_combination_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        ["sim", "--topology", "directed-ring,ring", "--peers", "5", "--algorithm", "pushsum,dpsgd",
         "--rounds", "2", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 2 and "dpsgd on directed-ring" in capsys.readouterr().err
    assert not out.exists()


def test_pushsum_refuses_a_digraph_that_is_not_strongly_connected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "path.edges"
    path.write_text("# directed\np0 p1\np1 p2\np2 p3\np3 p4\n")
    out = tmp_path / "run"
    args = ["sim", "--topology", str(path), "--algorithm", "pushsum", "--rounds", "2", "--quiet"]
    code = main([*args, "--out", str(out)])
    assert code == 2 and "strongly connected" in capsys.readouterr().err


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_a_batchnorm_model_gives_the_same_curves_in_both_engines(tmp_path: Path) -> None:
    x, y = blobs(seed=3)
    runs = {}
    for engine in ("vectorized", "network"):
        torch.manual_seed(0)
        runs[engine] = simulate(
            topology="ring",
            peers=4,
            model=WithBatchNorm(),
            data=(x[:200], y[:200], x[200:], y[200:]),
            rounds=6,
            lr=0.1,
            batch_size=16,
            eval_every=3,
            engine=engine,
            out=tmp_path / engine,
        )
    for v, n in zip(runs["vectorized"], runs["network"], strict=True):
        assert n["test_accuracy"] == pytest.approx(v["test_accuracy"], abs=0.005)
        assert n["consensus_distance"] == pytest.approx(v["consensus_distance"], rel=1e-3, abs=1e-9)
        assert n["bytes_sent"] == v["bytes_sent"]
    assert runs["vectorized"][-1]["test_accuracy"] > 0.5  # it learns (3 classes)
