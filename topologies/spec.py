"""A topology request as one validated value, and the one place that turns it into a graph.

The CLI, the simulator and peer-config export all describe a topology the same way: a kind
name (or a graph file) plus the few options that kind takes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import networkx as nx

from topologies import builders
from topologies.graph_io import SUFFIXES, load_graph

__all__ = ["KINDS", "TopologySpec", "build"]

KINDS = (
    "ring",
    "directed-ring",
    "torus",
    "complete",
    "star",
    "random",
    "random-regular",
    "small-world",
    "exponential",
    "hospital-mesh",
)


@dataclasses.dataclass(frozen=True)
class TopologySpec:
    """What to build. ``kind`` is one of ``KINDS`` or the path of a graph file."""

    kind: str
    peers: int | None = None
    seed: int = 0
    p: float | None = None
    degree: int = 4
    k: int = 4
    rewire: float = 0.1
    hospitals: int | None = None
    nodes_per_hospital: int | None = None
    links_per_hospital: int = 2

    def __post_init__(self) -> None:
        if self.is_file:
            return
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown topology {self.kind!r}; use one of {', '.join(KINDS)} or a graph file "
                f"({', '.join(SUFFIXES)})"
            )
        if self.kind == "hospital-mesh":
            self._resolve_hospitals()
        elif self.peers is None:
            raise ValueError(f"topology {self.kind!r} needs --peers")
        if self.peers is not None and self.peers < 1:
            raise ValueError(f"--peers must be positive, got {self.peers}")

    def _resolve_hospitals(self) -> None:
        hospitals, per, peers = self.hospitals, self.nodes_per_hospital, self.peers
        if hospitals is None or hospitals < 1:
            raise ValueError("hospital-mesh needs --hospitals (a positive count)")
        if per is None:
            if peers is None or peers % hospitals:
                raise ValueError(
                    "hospital-mesh needs --nodes-per-hospital, or --peers divisible by --hospitals"
                )
            per = peers // hospitals
        if peers is not None and peers != hospitals * per:
            raise ValueError(
                f"--peers {peers} disagrees with {hospitals} hospitals x {per} nodes per hospital"
            )
        object.__setattr__(self, "nodes_per_hospital", per)
        object.__setattr__(self, "peers", hospitals * per)

    @property
    def is_file(self) -> bool:
        return Path(self.kind).suffix.lower() in SUFFIXES

    @property
    def name(self) -> str:
        """Short label for legends and metrics: the kind, or the file's stem."""
        return Path(self.kind).stem if self.is_file else self.kind


def build(spec: TopologySpec) -> nx.Graph:
    """The graph ``spec`` describes, validated by its builder."""
    if spec.is_file:
        graph = load_graph(spec.kind)
        if spec.peers is not None and spec.peers != graph.number_of_nodes():
            raise ValueError(f"{spec.kind}: has {graph.number_of_nodes()} nodes but --peers is {spec.peers}")
        return graph
    n = spec.peers
    assert n is not None  # guaranteed by __post_init__
    match spec.kind:
        case "ring":
            return builders.ring(n)
        case "directed-ring":
            return builders.directed_ring(n)
        case "torus":
            return builders.torus_for(n)
        case "complete":
            return builders.complete(n)
        case "star":
            return builders.star(n)
        case "random":
            return builders.random(n, spec.p, seed=spec.seed)
        case "random-regular":
            return builders.random_regular(n, spec.degree, seed=spec.seed)
        case "small-world":
            return builders.small_world(n, spec.k, spec.rewire, seed=spec.seed)
        case "exponential":
            return builders.exponential(n)
        case _:
            assert spec.hospitals is not None
            assert spec.nodes_per_hospital is not None
            return builders.hospital_mesh(
                spec.hospitals, spec.nodes_per_hospital, spec.links_per_hospital, seed=spec.seed
            )
