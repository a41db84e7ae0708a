"""Atomic, checksummed checkpoints: weights, optimizer state, the algorithm's own state
(push-sum's numerator and mass) and round in one safetensors file.

Written to a temporary file in the same directory, fsynced, then renamed over the old
checkpoint (and the directory fsynced), so a peer killed at any instant leaves either the
previous checkpoint or the new one, never a torn file. The file is created 0600 (the
weights are the peer's private model) in a directory created 0700.

The metadata holds the peer's id, the round and a SHA-256 of the content (the other metadata
and every tensor's name, dtype, shape and bytes). Loading checks all of it, and the tensors
against the model they will be loaded into, before anything is used: a flipped byte, a
foreign or hand-edited file gives a ``ConfigError`` naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch

from gossipfl.errors import ConfigError, WireError
from gossipfl.transports.wire import check_tensors, parse_safetensors, safetensors_bytes

__all__ = ["Checkpoint", "load_checkpoint", "restore_checkpoint", "save_checkpoint"]

_OPTIM = "optimizer."
_STATE = "state."
_FORMAT = "gossipfl-checkpoint-2"
_ROUND = re.compile(r"0|[1-9][0-9]{0,17}", re.ASCII)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    round: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class _LoadsOptimizer(Protocol):
    def load_optimizer_state(self, state: Mapping[str, torch.Tensor]) -> None: ...


def _digest(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> str:
    described = {k: v for k, v in metadata.items() if k != "sha256"}
    h = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_checkpoint(
    path: Path,
    round_: int,
    weights: Mapping[str, torch.Tensor],
    optimizer: Mapping[str, torch.Tensor],
    peer: str,
    state: Mapping[str, torch.Tensor] | None = None,
) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    tensors.update({_OPTIM + k: v.detach().cpu().contiguous() for k, v in optimizer.items()})
    tensors.update({_STATE + k: v.detach().cpu().contiguous() for k, v in (state or {}).items()})
    metadata = {"format": _FORMAT, "round": str(round_), "peer": peer}
    metadata["sha256"] = _digest(metadata, tensors)
    data = safetensors_bytes(tensors, metadata)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # left by a peer killed mid-write; O_EXCL needs it gone
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read(path: Path) -> bytearray:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = bytearray(size)
            if handle.readinto(data) != size:
                raise ConfigError(f"{path}: not a readable checkpoint (it changed while being read)")
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable checkpoint ({exc.strerror or exc})") from exc
    return data


def load_checkpoint(path: Path, peer: str, template: Mapping[str, torch.Tensor] | None = None) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` for ``peer``; with ``template``, its
    weights must have the template's names, shapes and dtypes (and be finite)."""
    try:
        metadata, tensors = parse_safetensors(_read(path))
    except WireError as exc:
        raise ConfigError(f"{path}: not a readable checkpoint ({exc})") from exc
    if metadata.get("format") != _FORMAT:
        raise ConfigError(
            f"{path}: not a gossipfl checkpoint of this version (format {metadata.get('format')!r})"
        )
    if metadata.get("peer") != peer:
        raise ConfigError(f"{path}: checkpoint belongs to {metadata.get('peer')!r}, not {peer!r}")
    text = metadata.get("round")
    if text is None or _ROUND.fullmatch(text) is None:
        raise ConfigError(f"{path}: round must be a non-negative integer, got {text!r}")
    if metadata.get("sha256") != _digest(metadata, tensors):
        raise ConfigError(f"{path}: checksum mismatch: the file was damaged or edited")
    weights = {k: v for k, v in tensors.items() if not k.startswith((_OPTIM, _STATE))}
    optimizer = {k[len(_OPTIM) :]: v for k, v in tensors.items() if k.startswith(_OPTIM)}
    state = {k[len(_STATE) :]: v for k, v in tensors.items() if k.startswith(_STATE)}
    try:
        check_tensors(weights, template)
    except WireError as exc:
        raise ConfigError(f"{path}: weights do not fit this model ({exc})") from exc
    return Checkpoint(int(text), weights, optimizer, state)


def restore_checkpoint(
    path: Path, peer: str, template: Mapping[str, torch.Tensor], trainer: _LoadsOptimizer
) -> Checkpoint:
    """``load_checkpoint``, then the optimizer state into ``trainer``, which refuses state
    that does not fit it (``ValueError``); either failure names the file."""
    checkpoint = load_checkpoint(path, peer, template)
    try:
        trainer.load_optimizer_state(checkpoint.optimizer)
    except ValueError as exc:
        raise ConfigError(f"{path}: optimizer state does not fit this trainer ({exc})") from exc
    return checkpoint
