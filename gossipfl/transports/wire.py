"""The wire format: model weights as safetensors bytes, with our metadata in the header.

No pickle anywhere: safetensors is a length-prefixed JSON header plus raw tensor bytes.
``__metadata__`` holds string values (safetensors allows nothing else):

- ``format_version``: ``"1"``
- ``sender``: the sending peer's id
- ``round``: the sender's round
- ``num_samples``: the sender's training-set size
- ``degree``: the sender's number of neighbours (Metropolis–Hastings weights need it)
- ``weight``: the push-sum weight, when the sender runs push-sum

``decode`` validates everything before a tensor reaches a model: the size cap, the header
(dtypes, shapes, offsets that tile the data exactly), the metadata, then names, shapes and
dtypes against the receiver's own model, then finiteness. Any failure raises a
``WireError`` subclass carrying its HTTP status. Tensors are read-only views of the body.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from gossipfl.errors import ModelMismatch, PayloadTooLarge, WireError

__all__ = [
    "FORMAT_VERSION",
    "Message",
    "MessageSize",
    "check_tensors",
    "decode",
    "encode",
    "parse_safetensors",
    "safetensors_bytes",
]

FORMAT_VERSION = "1"
# A header larger than this is hostile or broken: ours are a few hundred bytes a tensor.
_MAX_HEADER = 1 << 20
# The peer-id rule of topologies.graph_io.validate_node_id, without importing topologies here.
_SENDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)


@dataclasses.dataclass(frozen=True)
class Message:
    tensors: dict[str, torch.Tensor]
    sender: str
    round: int
    num_samples: int
    degree: int | None = None
    weight: float | None = None


def _metadata(
    sender: str, round_: int, num_samples: int, degree: int | None, weight: float | None
) -> dict[str, str]:
    metadata = {
        "format_version": FORMAT_VERSION,
        "sender": sender,
        "round": str(round_),
        "num_samples": str(num_samples),
    }
    if degree is not None:
        metadata["degree"] = str(degree)
    if weight is not None:
        # 17 significant digits round-trip any double, and a fixed width keeps every
        # message of a run the same size (the simulator counts bytes exactly).
        metadata["weight"] = f"{float(weight):.17e}"
    return metadata


def encode(
    tensors: Mapping[str, torch.Tensor],
    *,
    sender: str,
    round_: int,
    num_samples: int,
    degree: int | None = None,
    weight: float | None = None,
) -> bytearray:
    """Serialize ``tensors`` (CPU copies are made as needed) with our metadata."""
    return safetensors_bytes(tensors, _metadata(sender, round_, num_samples, degree, weight))


class MessageSize:
    """The exact byte length ``encode`` produces for tensors shaped like ``template``, without
    encoding: the simulator counts the bytes real peers would send from this."""

    def __init__(self, template: Mapping[str, torch.Tensor]) -> None:
        header, self.data_bytes = _tensor_header(
            {k: v.detach() for k, v in sorted(template.items())}
        )
        self._tensors_json = len(_json(header)) - 2  # the entries without the braces

    def __call__(
        self,
        *,
        sender: str,
        round_: int,
        num_samples: int,
        degree: int | None = None,
        weight: float | None = None,
    ) -> int:
        metadata = _json({"__metadata__": _metadata(sender, round_, num_samples, degree, weight)})
        text = len(metadata) + (1 + self._tensors_json if self._tensors_json else 0)
        return 8 + text + (-text % 8) + self.data_bytes


_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


_FROM_CODE = {code: dtype for dtype, code in _DTYPES.items()}


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _tensor_header(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, object], int]:
    """The header entries of ``tensors`` (in the given order) and the data section's size."""
    header: dict[str, object] = {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise WireError(f"cannot send tensor {name!r} of dtype {t.dtype}")
        size = t.numel() * t.element_size()
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    return header, offset


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> bytearray:
    """The safetensors layout written straight into one buffer: one copy of each tensor,
    where the library's ``save`` makes several (a tenth of a push-pull's time at 10M
    parameters). The tests check that the safetensors library reads what this writes."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in sorted(tensors.items())}
    entries, offset = _tensor_header(cpu)
    text = _json({"__metadata__": metadata, **entries})
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment
    buffer = bytearray(8 + len(text) + offset)
    buffer[:8] = struct.pack("<Q", len(text))
    buffer[8 : 8 + len(text)] = text
    start = 8 + len(text)
    for t in cpu.values():
        size = t.numel() * t.element_size()
        if size:
            memoryview(buffer)[start : start + size] = t.reshape(-1).view(torch.uint8).numpy().data
        start += size
    # bytearray is returned as is: converting to bytes would copy the whole model again.
    return buffer


_INT = re.compile(r"-?[0-9]+", re.ASCII)
# What repr(float) writes (so NaN and infinities parse, and are refused as weights later).
_FLOAT = re.compile(r"-?([0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|inf|nan)", re.ASCII)
# Wire integers are at most int64: rounds, sample counts and degrees never come near it,
# and anything larger would overflow torch and numpy further in.
_MAX_INT = (1 << 63) - 1


def _int(meta: Mapping[str, str], key: str, required: bool = True) -> int | None:
    """A metadata integer in canonical decimal: no sign, spaces, underscores or other
    scripts' digits (all of which ``int()`` accepts)."""
    if key not in meta:
        if required:
            raise WireError(f"metadata lacks {key!r}")
        return None
    text = meta[key]
    if _INT.fullmatch(text) is None:
        raise WireError(f"metadata {key!r} is not an integer: {text[:40]!r}")
    if text.startswith("-"):
        raise WireError(f"metadata {key!r} is negative")
    if len(text) > 19 or int(text) > _MAX_INT:
        raise WireError(f"metadata {key!r} is out of range: {text[:40]!r}")
    return int(text)


def _float(meta: Mapping[str, str], key: str) -> float:
    text = meta[key]
    if len(text) > 40 or _FLOAT.fullmatch(text) is None:
        raise WireError(f"metadata {key!r} is not a number: {text[:40]!r}")
    return float(text)


# Our headers nest three deep ({name: {"shape": [...]}}); anything deeper is refused before
# json.loads, whose recursive parser would otherwise raise RecursionError on deep nesting.
_MAX_DEPTH = 3
_MAX_DIGITS = 20
_MAX_DIMS = 32
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _nesting(text: bytes) -> int:
    """The deepest bracket nesting of JSON ``text``, ignoring brackets inside strings, in
    linear time (vectorised: a per-byte Python loop would cost a second per megabyte)."""
    b = np.frombuffer(text, dtype=np.uint8)
    if not len(b):
        return 0
    index = np.arange(len(b))
    # A quote is escaped when an odd number of backslashes runs up to it.
    not_backslash = np.where(b != _BACKSLASH, index, -1)
    last_plain = np.maximum.accumulate(not_backslash)
    backslashes = np.empty(len(b), dtype=np.int64)
    backslashes[0] = 0
    backslashes[1:] = index[:-1] - last_plain[:-1]
    quotes = (b == _QUOTE) & (backslashes % 2 == 0)
    outside = np.cumsum(quotes) % 2 == 0
    opens = np.isin(b, _OPEN) & outside
    closes = np.isin(b, _CLOSE) & outside
    return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)


def _json_int(text: str) -> int:
    # json.loads would otherwise turn 5,000 digits into a ValueError from int().
    if len(text) > _MAX_DIGITS:
        raise WireError(f"safetensors header holds an integer of {len(text)} digits")
    return int(text)


def _json_constant(name: str) -> object:
    raise WireError(f"safetensors header holds {name}, which JSON does not allow")


def _header(body: bytes | bytearray) -> tuple[dict[str, object], int]:
    """The parsed JSON header and where the data section starts."""
    if len(body) < 8:
        raise WireError("body too short for a safetensors header")
    (size,) = struct.unpack("<Q", body[:8])
    if size > _MAX_HEADER or 8 + size > len(body):
        raise WireError(f"safetensors header length {size} does not fit a {len(body)}-byte body")
    raw = bytes(body[8 : 8 + size])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"safetensors header is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    depth = _nesting(raw)
    if depth > _MAX_DEPTH:
        raise WireError(f"safetensors header nests {depth} deep; at most {_MAX_DEPTH} is valid")
    try:
        header = json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise WireError(f"safetensors header is not JSON ({exc})") from exc
    except RecursionError as exc:  # only if the depth count above was fooled by invalid JSON
        raise WireError("safetensors header nests too deep") from exc
    if not isinstance(header, dict):
        raise WireError("safetensors header is not an object")
    return header, 8 + size


def _is_count(value: object) -> bool:
    # bool is an int subclass: `true` must not pass as a dimension or an offset.
    return type(value) is int and 0 <= value <= _MAX_INT


def _tensors(header: dict[str, object], body: bytes | bytearray, start: int) -> dict[str, torch.Tensor]:
    """Zero-copy views of the data section, after checking every entry against the format:
    a known dtype, a non-negative integer shape, and offsets that tile the data section
    exactly (no gaps, no overlaps, nothing outside it)."""
    entries = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise WireError(f"tensor {name!r}: malformed header entry")
        dtype = _FROM_CODE.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        shape, offsets = entry["shape"], entry["data_offsets"]
        if dtype is None:
            raise WireError(f"tensor {name!r}: unsupported dtype {entry['dtype']!r}")
        if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_is_count(d) for d in shape):
            raise WireError(f"tensor {name!r}: bad shape {_short(shape)}")
        # Even an empty tensor's other dimensions must fit the body: torch computes their
        # product in int64 and fails on overflow.
        if math.prod(d for d in shape if d) > len(body):
            raise WireError(f"tensor {name!r}: shape {_short(shape)} cannot fit a {len(body)}-byte body")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
            raise WireError(f"tensor {name!r}: bad data_offsets {_short(offsets)}")
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise WireError(f"tensor {name!r}: data_offsets do not match shape and dtype")
        entries.append((offsets[0], offsets[1], name, dtype, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    cursor = 0
    for begin, end, name, _, _ in entries:
        if begin != cursor:
            raise WireError(f"tensor {name!r}: data_offsets leave a gap or overlap")
        cursor = end
    if start + cursor != len(body):
        raise WireError(f"data section is {len(body) - start} bytes, the header describes {cursor}")
    out = {}
    with warnings.catch_warnings():
        # Read-only views of the received bytes: nothing writes to them (averaging makes
        # new tensors), which saves a copy of the whole model per message.
        warnings.simplefilter("ignore", UserWarning)
        for begin, end, name, dtype, shape in entries:
            count = (end - begin) // torch.empty(0, dtype=dtype).element_size()
            flat = (
                torch.frombuffer(body, dtype=dtype, count=count, offset=start + begin)
                if count
                else torch.empty(0, dtype=dtype)
            )
            out[name] = flat.reshape(shape)
    return out


def parse_safetensors(body: bytes | bytearray) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The string metadata and the tensors (views of ``body``) of any safetensors bytes,
    validated as ``decode`` does before it looks at our own metadata keys."""
    header, start = _header(body)
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WireError("safetensors header lacks string __metadata__")
    return meta, _tensors(header, body, start)


def decode(
    body: bytes | bytearray, template: Mapping[str, torch.Tensor] | None = None, max_bytes: int | None = None
) -> Message:
    """Parse and validate one message. With ``template``, tensors must match its names,
    shapes and dtypes exactly."""
    if max_bytes is not None and len(body) > max_bytes:
        raise PayloadTooLarge(f"body of {len(body)} bytes exceeds the cap of {max_bytes}")
    header, start = _header(body)
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WireError("safetensors header lacks string __metadata__")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WireError(f"unsupported format_version {_short(meta.get('format_version'))}")
    sender = meta.get("sender")
    if not sender:
        raise WireError("metadata lacks 'sender'")
    if _SENDER.fullmatch(sender) is None:
        raise WireError(f"metadata 'sender' is not a peer id: {sender[:80]!r}")
    weight = None
    if "weight" in meta:
        weight = _float(meta, "weight")
        if not (math.isfinite(weight) and weight > 0):
            raise ModelMismatch(f"push-sum weight must be finite and positive, got {weight}")
    round_ = _int(meta, "round")
    samples = _int(meta, "num_samples")
    assert round_ is not None and samples is not None
    tensors = _tensors(header, body, start)
    check_tensors(tensors, template)
    return Message(tensors, sender, round_, samples, _int(meta, "degree", required=False), weight)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _all_finite(tensor: torch.Tensor) -> bool:
    # Any NaN or infinity makes the sum NaN or infinite, so a finite sum proves every value
    # finite at a tenth of the cost of an element-wise check; only a sum that overflowed
    # (or a real NaN) needs the exact check.
    if bool(torch.isfinite(tensor.sum(dtype=torch.float64))):
        return True
    return bool(torch.isfinite(tensor).all())


def check_tensors(
    tensors: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Raise ``ModelMismatch`` unless ``tensors`` match ``template`` (names, shapes, dtypes)
    and hold only finite values."""
    if template is not None:
        _match(tensors, template)
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not _all_finite(tensor):
            raise ModelMismatch(f"tensor {name!r} holds NaN or infinity")


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
