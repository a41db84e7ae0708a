import math
from pathlib import Path

import networkx as nx
import pytest

import topologies as t


@pytest.mark.parametrize("suffix", [".edges", ".json", ".graphml"])
@pytest.mark.parametrize(
    "graph",
    [t.hospital_mesh(3, 3, 2), t.directed_ring(5), t.ring(4)],
    ids=["mesh", "dring", "ring"],
)
def test_round_trip_keeps_nodes_edges_and_direction(tmp_path: Path, suffix: str, graph) -> None:
    path = t.save_graph(graph, tmp_path / f"g{suffix}")
    back = t.load_graph(path)
    assert back.is_directed() == graph.is_directed()
    assert list(back.nodes) == list(graph.nodes)
    assert nx.utils.edges_equal(back.edges, graph.edges) or set(back.edges) == set(graph.edges)
    assert back.number_of_edges() == graph.number_of_edges()


def test_json_adjacency_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"alice": ["bob"], "bob": ["alice", "carol"], "carol": ["bob"]}')
    g = t.load_graph(path)
    assert not g.is_directed()
    assert sorted(g.edges) == [("alice", "bob"), ("bob", "carol")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", "[1, 2]", "expected an object"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.edges", "p0 p1 p2\n", "expected 'u v'"),
        ("a.edges", "p0 p0\n", "self-loop"),
        ("a.edges", "p0 bad/id\n", "node id"),
        ("a.graphml", "<graphml", "GraphML"),
        ("a.csv", "", "unknown graph format"),
        ("a.edges", "# nothing\n", "no nodes"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        t.load_graph(path)
    assert str(path) in str(info.value) or "unknown graph format" in message


def test_summary_of_known_graphs() -> None:
    s = t.summarize(t.ring(10))
    assert (s["nodes"], s["edges"], s["degree_min"], s["degree_max"], s["diameter"]) == (
        10,
        10,
        2,
        2,
        5,
    )
    # ring of 10 under Metropolis–Hastings is the uniform ring: lambda_2 = 1/3 + 2/3 cos(2 pi/10)
    assert s["spectral_gap"] == pytest.approx(1 - (1 / 3 + 2 / 3 * math.cos(2 * math.pi / 10)))
    disconnected = nx.Graph([("a", "b"), ("c", "d")])
    assert t.diameter(disconnected) is None


@pytest.mark.parametrize("directed", [False, True], ids=["undirected", "directed"])
def test_graphml_with_parallel_edges_loads_as_one_link_each(tmp_path: Path, directed: bool) -> None:
    multi = nx.MultiDiGraph() if directed else nx.MultiGraph()
    multi.add_edges_from([("a", "b"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "a"), ("c", "a")])
    path = tmp_path / "parallel.graphml"
    nx.write_graphml(multi, path)
    assert path.read_text().count("<edge ") == 6  # the file really holds parallel edges
    g = t.load_graph(path)
    assert not g.is_multigraph() and g.is_directed() == directed
    assert list(g.nodes) == ["a", "b", "c"]
    if directed:
        assert set(g.edges) == {("a", "b"), ("b", "c"), ("c", "a")}
    else:
        assert {tuple(sorted(e)) for e in g.edges} == {("a", "b"), ("b", "c"), ("a", "c")}
    summary = t.summarize(g)
    assert summary["edges"] == 3
    # an undirected triangle mixes in one round; push-sum on a directed 3-cycle has |lambda_2| = 1/2
    assert summary["spectral_gap"] == pytest.approx(0.5 if directed else 1.0, abs=1e-12)
