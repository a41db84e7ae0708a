import json
import subprocess
import sys
from pathlib import Path

import pytest

from gossipfl.cli import main
from gossipfl.config import load_peer_config


def test_hospital_mesh_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    argv = "topology hospital-mesh --hospitals 4 --nodes-per-hospital 5 --links-per-hospital 2 --json"
    assert main(argv.split()) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) >= {
        "nodes",
        "edges",
        "degree_min",
        "degree_mean",
        "degree_max",
        "diameter",
        "spectral_gap",
    }
    assert summary["nodes"] == 20
    # 4 cliques of 5 (10 edges each) plus a 2-regular gateway mesh on 4 gateways (4 edges)
    assert summary["edges"] == 44
    assert 0 < summary["spectral_gap"] < 1


def test_out_writes_loadable_configs_with_distinct_ports(tmp_path: Path) -> None:
    out = tmp_path / "net"
    assert (
        main(
            [
                "topology",
                "ring",
                "--peers",
                "6",
                "--out",
                str(out),
                "--base-port",
                "9100",
                "--dataset",
                "iris",
                "--rounds",
                "7",
                "--draw",
                str(tmp_path / "g.png"),
            ]
        )
        == 0
    )
    configs = [load_peer_config(out / f"p{i}.toml") for i in range(6)]
    assert sorted(c.port for c in configs) == list(range(9100, 9106))
    assert {n.id for n in configs[0].neighbors} == {"p1", "p5"}
    assert configs[0].neighbors[0].url.startswith("http://127.0.0.1:91")
    assert [c.data.part for c in configs] == list(range(6))
    assert all(c.data.parts == 6 and c.data.dataset == "iris" and c.train.rounds == 7 for c in configs)
    assert (out / "topology.json").is_file()
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("topology ring --peers 2", "a ring needs at least 3 peers"),
        ("topology random-regular --peers 5 --degree 3", "n*degree must be even"),
        ("topology banana --peers 4", "unknown topology"),
        ("topology hospital-mesh --peers 5", "needs --hospitals"),
    ],
)
def test_bad_parameters_give_one_line_errors(argv: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gossipfl", *argv.split()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_flag_value_is_rejected_by_the_parser() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gossipfl", "topology", "ring", "--peers", "-3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "must be a positive integer" in done.stderr


def test_parallel_edges_in_graphml_are_summarised_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "multi.graphml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
        '<graph edgedefault="undirected">\n'
        '<node id="a"/><node id="b"/><node id="c"/><node id="d"/>\n'
        '<edge source="a" target="b"/><edge source="a" target="b"/>\n'
        '<edge source="b" target="c"/><edge source="c" target="d"/><edge source="d" target="a"/>\n'
        "</graph></graphml>\n"
    )
    assert main(["topology", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["nodes"], summary["edges"], summary["degree_max"]) == (4, 4, 2)
    assert summary["spectral_gap"] == pytest.approx(2 / 3, abs=1e-12)  # 4-ring: lambda_2 = -1/3


def test_push_sum_summary_refuses_a_directed_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "path.edges"
    path.write_text("# directed\np0 p1\np1 p2\np2 p3\np3 p4\n")
    assert main(["topology", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "push-sum needs a strongly connected digraph" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--momentum 1.5", "--momentum: must be in [0, 1), got 1.5"),
        ("--lr -1", "--lr: must be >= 0, got -1.0"),
        ("--rounds 0", "--rounds: must be >= 1, got 0"),
        ("--hidden 8,0", "--hidden: expected a list of positive integers, got (8, 0)"),
        ("--dataset imagenet", "--dataset: unknown dataset 'imagenet'"),
        ("--alpha 0", "--alpha: must be > 0, got 0.0"),
    ],
)
def test_bad_training_flags_fail_before_anything_is_written(tmp_path: Path, flags: str, message: str) -> None:
    out = tmp_path / "net"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gossipfl",
            "topology",
            "ring",
            "--peers",
            "4",
            *flags.split(),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"gossipfl topology: error: {message}")
    assert done.stdout == "" and not out.exists()
