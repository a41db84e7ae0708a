"""Splitting a training set among peers: IID, Dirichlet label skew, shards, by hospital, or
the user's own split (a mapping from peer to sample indices, in Python or a JSON file).

Every partitioner is a pure function of the labels and a seed, so every peer of a real
network computes the same split and keeps its own part, and the simulator's engines agree.
Every part is non-empty.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from gossipfl.errors import ConfigError

__all__ = ["PARTITIONS", "check_partition", "dirichlet", "iid", "load_partition", "partition", "shards"]


def _check(n_samples: int, parts: int) -> None:
    if parts < 1:
        raise ValueError(f"need at least one part, got {parts}")
    if n_samples < parts:
        raise ValueError(f"cannot give {parts} peers a sample each from {n_samples} samples")


def iid(n_samples: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then cut into parts whose sizes differ by at most one."""
    _check(n_samples, parts)
    return [np.sort(p) for p in np.array_split(rng.permutation(n_samples), parts)]


def dirichlet(labels: np.ndarray, parts: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Label skew: each class is spread over the parts in Dirichlet(alpha) proportions.

    Small alpha gives each peer few classes. A part left empty by the draw takes one sample
    from the largest part, so every peer can train.
    """
    _check(len(labels), parts)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    buckets: list[list[int]] = [[] for _ in range(parts)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(parts, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for bucket, chunk in zip(buckets, np.split(members, cuts), strict=True):
            bucket.extend(chunk.tolist())
    for bucket in buckets:
        if not bucket:
            donor = max(buckets, key=len)
            bucket.append(donor.pop())
    return [np.sort(np.array(b, dtype=np.int64)) for b in buckets]


def shards(labels: np.ndarray, parts: int, rng: np.random.Generator, per_part: int = 2) -> list[np.ndarray]:
    """Sort by label, cut into ``parts * per_part`` shards, deal ``per_part`` shards to each."""
    _check(len(labels), parts * per_part)
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, parts * per_part)
    dealt = rng.permutation(len(pieces)).reshape(parts, per_part)
    return [np.sort(np.concatenate([pieces[i] for i in row])) for row in dealt]


def by_hospital(
    labels: np.ndarray, groups: np.ndarray, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Dirichlet label skew between hospitals, IID among one hospital's nodes.

    ``groups[i]`` is peer i's hospital (0..H-1).
    """
    hospitals = int(groups.max()) + 1
    per_hospital = dirichlet(labels, hospitals, alpha, rng)
    out: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(groups)
    for h, samples in enumerate(per_hospital):
        members = np.flatnonzero(groups == h)
        if len(samples) < len(members):
            raise ValueError(f"hospital {h} drew {len(samples)} samples for {len(members)} nodes")
        for node, idx in zip(members, iid(len(samples), len(members), rng), strict=True):
            out[node] = samples[idx]
    return out


def _by_hospital(
    labels: np.ndarray, parts: int, alpha: float, groups: np.ndarray | None, rng: np.random.Generator
) -> list[np.ndarray]:
    if groups is None or len(groups) != parts:
        raise ValueError("by-hospital needs each peer's hospital (use a hospital-mesh topology)")
    return by_hospital(labels, groups, alpha, rng)


# (labels, parts, alpha, hospital of each peer or None, rng) -> each part's sample indices.
Partitioner = Callable[[np.ndarray, int, float, np.ndarray | None, np.random.Generator], list[np.ndarray]]

# The partition schemes by name. Adding one is one function and one entry.
PARTITIONS: dict[str, Partitioner] = {
    "iid": lambda labels, parts, alpha, groups, rng: iid(len(labels), parts, rng),
    "dirichlet": lambda labels, parts, alpha, groups, rng: dirichlet(labels, parts, alpha, rng),
    "shards": lambda labels, parts, alpha, groups, rng: shards(labels, parts, rng),
    "by-hospital": _by_hospital,
}


def partition(
    labels: np.ndarray,
    parts: int,
    scheme: str,
    seed: int,
    alpha: float = 0.5,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Indices of the training samples of each of ``parts`` peers under ``scheme``."""
    if scheme not in PARTITIONS:
        raise ValueError(f"unknown partition {scheme!r}; use one of {', '.join(PARTITIONS)}")
    return PARTITIONS[scheme](labels, parts, alpha, groups, np.random.default_rng(seed))


def hospital_groups(parts: int, hospitals: int) -> np.ndarray:
    """Hospital of each peer when peers are numbered hospital-major, as hospital-mesh does."""
    if hospitals < 1 or parts % hospitals:
        raise ValueError(f"{parts} peers do not split evenly into {hospitals} hospitals")
    return np.repeat(np.arange(hospitals), parts // hospitals)


def check_partition(
    parts: Mapping[str, Sequence[int]] | Sequence[Sequence[int]],
    nodes: Sequence[str],
    n_samples: int,
    where: str = "partition",
) -> list[np.ndarray]:
    """A user's partition (peer id -> sample indices, or one index list per node in order)
    as arrays in ``nodes`` order; ValueError naming ``where`` and the problem otherwise."""
    if isinstance(parts, Mapping):
        unknown = sorted(set(map(str, parts)) - set(nodes))
        missing = [v for v in nodes if v not in parts]
        if unknown or missing:
            raise ValueError(
                f"{where}: peers differ from the topology's: unknown {unknown[:5]}, missing {missing[:5]}"
            )
        ordered = [parts[v] for v in nodes]
    else:
        ordered = list(parts)
        if len(ordered) != len(nodes):
            raise ValueError(f"{where}: {len(ordered)} index lists for {len(nodes)} peers")
    out, seen = [], np.zeros(n_samples, dtype=bool)
    for node, indices in zip(nodes, ordered, strict=True):
        if not isinstance(indices, (list, tuple, np.ndarray)) or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in indices
        ):
            raise ValueError(f"{where}: peer {node!r}: expected a list of sample indices")
        array = np.asarray(indices, dtype=np.int64)
        if len(array) == 0:
            raise ValueError(f"{where}: peer {node!r} holds no samples")
        if array.min() < 0 or array.max() >= n_samples:
            raise ValueError(f"{where}: peer {node!r}: indices must be in 0..{n_samples - 1}")
        if seen[array].any() or len(np.unique(array)) != len(array):
            raise ValueError(f"{where}: peer {node!r}: a sample is given to more than one peer (or twice)")
        seen[array] = True
        out.append(np.sort(array))
    return out


def load_partition(path: Path, nodes: Sequence[str], n_samples: int) -> list[np.ndarray]:
    """Read a partition file: JSON, either ``{"peer id": [indices...]}`` or a list of index
    lists in the topology's node order. Errors name the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{path}: not a JSON partition ({exc})") from exc
    if not isinstance(data, (dict, list)):
        raise ConfigError(f"{path}: expected an object of peer id -> indices, or a list of lists")
    try:
        return check_partition(data, nodes, n_samples, str(path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
