"""Atomic checkpoints: weights, optimizer state and round in one safetensors file.

Written to a temporary file in the same directory, fsynced, then renamed over the old
checkpoint (and the directory fsynced), so a peer killed at any instant leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from gossipfl.errors import ConfigError

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

_OPTIM = "optimizer."


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    round: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]


def save_checkpoint(
    path: Path,
    round_: int,
    weights: Mapping[str, torch.Tensor],
    optimizer: Mapping[str, torch.Tensor],
    peer: str,
) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    tensors.update({_OPTIM + k: v.detach().cpu().contiguous() for k, v in optimizer.items()})
    data = save(tensors, metadata={"round": str(round_), "peer": peer})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: Path, peer: str) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` for ``peer``."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError, SafetensorError) as exc:
        raise ConfigError(f"{path}: not a readable checkpoint ({exc})") from exc
    if metadata.get("peer") != peer:
        raise ConfigError(f"{path}: checkpoint belongs to {metadata.get('peer')!r}, not {peer!r}")
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPTIM)}
    optimizer = {k[len(_OPTIM) :]: v for k, v in tensors.items() if k.startswith(_OPTIM)}
    return Checkpoint(int(metadata["round"]), weights, optimizer)
