"""Graphs and mixing matrices for gossip learning; knows nothing of peers or models."""

from topologies.builders import (
    complete,
    directed_ring,
    exponential,
    hospital_id,
    hospital_mesh,
    random,
    random_regular,
    ring,
    small_world,
    star,
    torus,
)
from topologies.graph_io import load_graph, save_graph
from topologies.mixing import (
    lazy,
    metropolis_hastings,
    mixing_matrix,
    push_sum,
    second_eigenvalue_modulus,
    spectral_gap,
    uniform,
)
from topologies.spec import KINDS, TopologySpec, build
from topologies.summary import diameter, summarize

__all__ = [
    "KINDS",
    "TopologySpec",
    "build",
    "complete",
    "diameter",
    "directed_ring",
    "exponential",
    "hospital_id",
    "hospital_mesh",
    "lazy",
    "load_graph",
    "metropolis_hastings",
    "mixing_matrix",
    "push_sum",
    "random",
    "random_regular",
    "ring",
    "save_graph",
    "second_eigenvalue_modulus",
    "small_world",
    "spectral_gap",
    "star",
    "summarize",
    "torus",
    "uniform",
]
