"""What a run directory records about its topologies and device, and the theory line drawn
from it: lambda_2 of the matrix each algorithm really mixes with."""

import json
import math
from pathlib import Path

import networkx as nx
import pytest
import torch

import topologies as t
from gossipfl.cli import main
from sim import plots


def lollipop(tmp_path: Path) -> tuple[Path, nx.Graph]:
    # Irregular degrees (a 5-clique with a 4-node tail): the push-sum matrix and
    # Metropolis–Hastings differ here by 37 % in log-rate.
    graph = nx.relabel_nodes(nx.lollipop_graph(5, 4), lambda v: f"p{v}")
    return t.save_graph(graph, tmp_path / "lollipop.edges"), graph


def test_pushsum_run_records_and_decays_at_the_push_sum_lambda2(tmp_path: Path) -> None:
    path, graph = lollipop(tmp_path)
    run = tmp_path / "run"
    argv = (
        f"sim --topology {path} --algorithm pushsum --dataset iris --model logreg --lr 0 --init independent "
        f"--rounds 120 --eval-every 60 --quiet --out {run}"
    )
    assert main(argv.split()) == 0
    (stat,) = json.loads((run / "config.json").read_text())["topology_stats"]
    push_sum = t.second_eigenvalue_modulus(t.push_sum(graph.to_directed()))
    metropolis = t.second_eigenvalue_modulus(t.metropolis_hastings(graph))
    assert stat["lambda2_pushsum"] == pytest.approx(push_sum, abs=1e-12)
    assert stat["lambda2"] == pytest.approx(metropolis, abs=1e-12)
    # Pure averaging (lr 0) from apart. z = x / w deviates from the mean by a lambda_2^t term
    # plus a lambda_2^(2t) one from the ratio; by round 60 that one is 2.5 % of the first, so
    # rounds 60 to 120 decay at lambda_2^2 of the push-sum matrix.
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cd = {r["round"]: r["consensus_distance"] for r in rows}
    rate = (math.log(cd[120]) - math.log(cd[60])) / 60
    assert rate == pytest.approx(2 * math.log(stat["lambda2_pushsum"]), rel=0.05)
    assert abs(rate - 2 * math.log(stat["lambda2"])) > 0.2 * abs(rate)  # the old, wrong line
    # what the dashed theory line of `gossipfl plot` uses for each run
    _, lambda2 = plots._collect([run])
    assert lambda2[("lollipop", "pushsum")] == stat["lambda2_pushsum"]
    assert lambda2[("lollipop", "dpsgd")] == stat["lambda2"]


def test_run_directories_without_lambda2_pushsum_still_plot() -> None:
    old = {"name": "directed-ring", "peers": 8, "lambda2": 0.92}
    assert plots._lambda2_by_algorithm(old) == {"dpsgd": 0.92, "pushsum": 0.92}


def test_pushsum_sim_refuses_a_directed_path_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "path.edges"
    path.write_text("# directed\np0 p1\np1 p2\np2 p3\np3 p4\n")
    run = tmp_path / "run"
    argv = f"sim --topology {path} --algorithm pushsum --dataset iris --rounds 150 --quiet --out {run}"
    assert main(argv.split()) == 2
    err = capsys.readouterr().err
    assert "strongly connected" in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "unknown device 'tpu'; use cpu, cuda or cuda:N"),
        ("cuda:x", "unknown device 'cuda:x'"),
        ("mps", "unknown device 'mps'"),
        ("cuda:3" if torch.cuda.device_count() <= 3 else "cuda:99", "no CUDA device 'cuda:"),
    ],
)
def test_bad_device_is_one_line_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str, message: str
) -> None:
    run = tmp_path / "run"
    argv = f"sim --topology ring --peers 4 --dataset iris --rounds 1 --quiet --device {device} --out {run}"
    assert main(argv.split()) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not run.exists()


def test_config_records_the_device_actually_used(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = f"sim --topology ring --peers 4 --dataset iris --rounds 1 --quiet --device cuda --out {run}"
    assert main(argv.split()) == 0
    used = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    assert json.loads((run / "config.json").read_text())["sim"]["device"] == used
