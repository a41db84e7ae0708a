import networkx as nx
import pytest

import topologies as t
from topologies.spec import TopologySpec, build


def degrees(g: nx.Graph) -> list[int]:
    return sorted(d for _, d in g.degree)


@pytest.mark.parametrize("n", [3, 4, 17])
def test_ring_is_a_connected_cycle(n: int) -> None:
    g = t.ring(n)
    assert list(g.nodes) == [f"p{i}" for i in range(n)]
    assert degrees(g) == [2] * n
    assert nx.is_connected(g)
    assert g.number_of_edges() == n


def test_directed_ring_has_one_out_and_one_in_edge_per_node() -> None:
    g = t.directed_ring(6)
    assert g.is_directed()
    assert all(g.out_degree[v] == 1 and g.in_degree[v] == 1 for v in g)
    assert nx.is_strongly_connected(g)


def test_torus_is_four_regular_and_wraps() -> None:
    g = t.torus(4, 5)
    assert g.number_of_nodes() == 20
    assert degrees(g) == [4] * 20
    assert g.has_edge("p0", "p4")  # row 0 wraps from column 4 back to column 0


def test_complete_and_star_degrees() -> None:
    assert degrees(t.complete(6)) == [5] * 6
    assert degrees(t.star(6)) == [1] * 5 + [5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_graph_is_connected_and_seeded(seed: int) -> None:
    g = t.random(50, 0.08, seed=seed)
    assert nx.is_connected(g)
    assert sorted(g.edges) == sorted(t.random(50, 0.08, seed=seed).edges)


def test_random_regular_degrees_and_connectivity() -> None:
    g = t.random_regular(30, 3, seed=4)
    assert degrees(g) == [3] * 30
    assert nx.is_connected(g)


def test_small_world_connected_with_mean_degree_k() -> None:
    g = t.small_world(40, 6, 0.3, seed=1)
    assert nx.is_connected(g)
    assert g.number_of_edges() == 40 * 6 // 2


def test_exponential_links_powers_of_two() -> None:
    g = t.exponential(16)
    assert set(g.neighbors("p0")) == {"p1", "p2", "p4", "p8", "p15", "p14", "p12"}
    assert degrees(g) == [7] * 16


def test_hospital_mesh_structure() -> None:
    g = t.hospital_mesh(5, 4, links_per_hospital=2, seed=3)
    assert g.number_of_nodes() == 20
    assert nx.is_connected(g)
    for h in range(5):
        members = [f"h{h}-n{k}" for k in range(4)]
        sub = g.subgraph(members)
        assert sub.number_of_edges() == 6  # each hospital is a clique
        assert all(t.hospital_id(v) == h for v in members)
    cross = [(u, v) for u, v in g.edges if t.hospital_id(u) != t.hospital_id(v)]
    assert all(u.endswith("-n0") and v.endswith("-n0") for u, v in cross)  # only gateways
    gateway_degrees = [sum(1 for e in cross if g_ in e) for g_ in (f"h{h}-n0" for h in range(5))]
    assert gateway_degrees == [2] * 5


def test_hospital_mesh_odd_degree_product_still_connected() -> None:
    g = t.hospital_mesh(5, 2, links_per_hospital=3, seed=0)
    assert nx.is_connected(g)
    cross = [(u, v) for u, v in g.edges if t.hospital_id(u) != t.hospital_id(v)]
    assert max(sum(1 for e in cross if f"h{h}-n0" in e) for h in range(5)) <= 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: t.ring(2), "at least 3"),
        (lambda: t.random_regular(5, 3), "even"),
        (lambda: t.random(100, 0.001), "connected"),
        (lambda: t.torus(2, 5), "both sides"),
        (lambda: t.small_world(10, 3), "even"),
        (lambda: t.hospital_mesh(1, 3), "at least 2 hospitals"),
        (lambda: TopologySpec("ring"), "needs --peers"),
        (lambda: TopologySpec("moebius", peers=4), "unknown topology"),
        (lambda: TopologySpec("hospital-mesh", peers=10, hospitals=3), "divisible"),
    ],
)
def test_impossible_parameters_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_spec_resolves_hospital_mesh_from_peers() -> None:
    spec = TopologySpec("hospital-mesh", peers=12, hospitals=3)
    assert spec.nodes_per_hospital == 4
    assert build(spec).number_of_nodes() == 12
