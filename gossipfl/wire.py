"""The wire format: model weights as safetensors bytes, with our metadata in the header.

No pickle anywhere: safetensors is a length-prefixed JSON header plus raw tensor bytes.
``__metadata__`` holds string values (safetensors allows nothing else):

- ``format_version``: ``"1"``
- ``sender``: the sending peer's id
- ``round``: the sender's round
- ``num_samples``: the sender's training-set size
- ``degree``: the sender's number of neighbours (Metropolis–Hastings weights need it)
- ``weight``: the push-sum weight, when the sender runs push-sum

``decode`` validates everything before a tensor reaches a model: the size cap, the header,
the metadata, then names, shapes and dtypes against the receiver's own model, then
finiteness. Any failure raises a ``WireError`` subclass carrying its HTTP status.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from gossipfl.errors import ModelMismatch, PayloadTooLarge, WireError

__all__ = ["FORMAT_VERSION", "Message", "decode", "encode"]

FORMAT_VERSION = "1"
# A header larger than this is hostile or broken: ours are a few hundred bytes a tensor.
_MAX_HEADER = 1 << 20


@dataclasses.dataclass(frozen=True)
class Message:
    tensors: dict[str, torch.Tensor]
    sender: str
    round: int
    num_samples: int
    degree: int | None = None
    weight: float | None = None


def encode(
    tensors: Mapping[str, torch.Tensor],
    *,
    sender: str,
    round_: int,
    num_samples: int,
    degree: int | None = None,
    weight: float | None = None,
) -> bytes:
    """Serialize ``tensors`` (CPU copies are made as needed) with our metadata."""
    metadata = {
        "format_version": FORMAT_VERSION,
        "sender": sender,
        "round": str(round_),
        "num_samples": str(num_samples),
    }
    if degree is not None:
        metadata["degree"] = str(degree)
    if weight is not None:
        metadata["weight"] = repr(float(weight))
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data: bytes = st_save(cpu, metadata=metadata)
    return data


def _int(meta: Mapping[str, str], key: str, required: bool = True) -> int | None:
    if key not in meta:
        if required:
            raise WireError(f"metadata lacks {key!r}")
        return None
    try:
        value = int(meta[key])
    except ValueError as exc:
        raise WireError(f"metadata {key!r} is not an integer: {meta[key]!r}") from exc
    if value < 0:
        raise WireError(f"metadata {key!r} is negative")
    return value


def _header(body: bytes) -> dict[str, object]:
    if len(body) < 8:
        raise WireError("body too short for a safetensors header")
    (size,) = struct.unpack("<Q", body[:8])
    if size > _MAX_HEADER or 8 + size > len(body):
        raise WireError(f"safetensors header length {size} does not fit a {len(body)}-byte body")
    try:
        header = json.loads(body[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise WireError("safetensors header is not an object")
    return header


def decode(
    body: bytes, template: Mapping[str, torch.Tensor] | None = None, max_bytes: int | None = None
) -> Message:
    """Parse and validate one message. With ``template``, tensors must match its names,
    shapes and dtypes exactly."""
    if max_bytes is not None and len(body) > max_bytes:
        raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the cap of {max_bytes}")
    meta = _header(body).get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WireError("safetensors header lacks string __metadata__")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WireError(f"unsupported format_version {meta.get('format_version')!r}")
    sender = meta.get("sender")
    if not sender:
        raise WireError("metadata lacks 'sender'")
    weight = None
    if "weight" in meta:
        try:
            weight = float(meta["weight"])
        except ValueError as exc:
            raise WireError(f"metadata 'weight' is not a number: {meta['weight']!r}") from exc
        if not (math.isfinite(weight) and weight > 0):
            raise ModelMismatch(f"push-sum weight must be finite and positive, got {weight}")
    round_ = _int(meta, "round")
    samples = _int(meta, "num_samples")
    assert round_ is not None and samples is not None
    try:
        tensors = st_load(body)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise WireError(f"malformed safetensors body ({exc})") from exc
    if template is not None:
        _match(tensors, template)
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelMismatch(f"tensor {name!r} holds NaN or infinity")
    return Message(tensors, sender, round_, samples, _int(meta, "degree", required=False), weight)


def _match(tensors: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(template) - set(tensors))
    extra = sorted(set(tensors) - set(template))
    if missing or extra:
        raise ModelMismatch(f"tensor names differ: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, expected in template.items():
        got = tensors[name]
        if got.shape != expected.shape:
            raise ModelMismatch(f"{name}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
        if got.dtype != expected.dtype:
            raise ModelMismatch(f"{name}: dtype {got.dtype}, expected {expected.dtype}")
