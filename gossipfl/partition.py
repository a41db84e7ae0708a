"""Splitting a training set among peers: IID, Dirichlet label skew, shards, by hospital.

Every partitioner is a pure function of the labels and a seed, so every peer of a real
network computes the same split and keeps its own part, and the simulator's engines agree.
Every part is non-empty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["PARTITIONS", "dirichlet", "iid", "partition", "shards"]


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
