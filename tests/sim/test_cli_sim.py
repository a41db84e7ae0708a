import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gossipfl.cli import main
from gossipfl.threads import PEER_THREADS, available_cores, threads_for
from sim.rundir import METRIC_KEYS


def test_sim_writes_run_directory_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = (
        "sim --topology ring,hospital-mesh --hospitals 2 --peers 8 --dataset iris --rounds 20 "
        f"--baseline fedavg,central --init independent --lr 0 --eval-every 5 --quiet --out {run}"
    )
    assert main(argv.split()) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["sim"]["train"]["rounds"] == 20 and config["sim"]["dataset"] == "iris"
    assert {s["name"] for s in config["topology_stats"]} == {"ring", "hospital-mesh"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(set(r) == set(METRIC_KEYS) for r in rows)
    runs = {(r["algorithm"], r["topology"]) for r in rows}
    assert runs == {
        ("dpsgd", "ring"),
        ("dpsgd", "hospital-mesh"),
        ("fedavg", "server"),
        ("central", "pooled"),
    }
    ring = [r for r in rows if r["topology"] == "ring"]
    assert [r["round"] for r in ring] == [0, 5, 10, 15, 20]
    assert ring[-1]["consensus_distance"] < ring[0]["consensus_distance"]
    assert "dpsgd/ring" in capsys.readouterr().out

    png = tmp_path / "plot.png"
    assert main(["plot", str(run), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("sim --topology ring --peers 4 --dropout-prob 1.5 --out X", "--dropout-prob: must be in [0, 1)"),
        ("sim --topology ring --peers 4 --threads -1 --out X", "--threads: must be >= 0, got -1"),
        ("sim --topology ring --peers 4 --eval-every 0 --out X", "--eval-every: must be >= 1, got 0"),
        ("sim --topology ring --peers 4 --momentum 1 --out X", "--momentum: must be in [0, 1), got 1.0"),
        (
            "sim --topology ring --peers 4 --baseline fedprox --out X",
            "--baseline: unknown baseline 'fedprox'",
        ),
        ("sim --topology ring --peers 4 --algorithm sgd --out X", "unknown algorithm 'sgd'"),
        ("sim --topology directed-ring --peers 4 --rounds 1 --out X", "dpsgd needs an undirected"),
        ("sim --topology ring --peers 4 --dataset npz:/nonexistent.npz --out X", "cannot read"),
        ("sim --algorithm none --baseline fedavg --out X", "need --peers"),
        ("plot /nonexistent -o x.png", "not a run directory"),
        ("plot /nonexistent -o x.gif", "must end in .png"),
    ],
)
def test_bad_sim_input_gives_one_line_error(tmp_path: Path, argv: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gossipfl", *argv.replace("X", str(tmp_path / "r")).split()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_topology_command_starts_without_torch() -> None:
    code = (
        "import sys; from gossipfl.cli import main; main(['topology','ring','--peers','5','--json']);"
        "assert 'torch' not in sys.modules, 'topology imported torch'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_sim_on_a_user_graph_file_with_logistic_regression(tmp_path: Path) -> None:
    graph = tmp_path / "clinics.edges"
    graph.write_text("a b\nb c\nc d\nd a\na c\n")
    run = tmp_path / "run"
    argv = (
        f"sim --topology {graph} --dataset breast-cancer --model logreg --rounds 30 "
        f"--partition dirichlet --alpha 1.0 --eval-every 10 --quiet --out {run}"
    )
    assert main(argv.split()) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["topology"] for r in rows} == {"clinics"}
    assert rows[-1]["peers"] == 4 and rows[-1]["test_accuracy"] > 0.85


@pytest.mark.parametrize(
    ("flags", "threads"),
    [
        ("--threads 1", 1),
        ("", threads_for(0, available_cores())),  # OMP_NUM_THREADS, if set, counts
        ("--engine network", threads_for(0, PEER_THREADS)),
        ("--engine network --threads 2", 2),
    ],
)
def test_sim_computes_with_the_threads_asked_for(tmp_path: Path, flags: str, threads: int) -> None:
    before = torch.get_num_threads()
    run = tmp_path / "run"
    argv = f"sim --topology ring --peers 3 --dataset iris --rounds 2 --quiet {flags} --out {run}"
    assert main(argv.split()) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["torch_threads"] == threads  # read inside the run
    assert torch.get_num_threads() == before  # and given back after it
