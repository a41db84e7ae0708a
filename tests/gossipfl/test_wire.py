import json
import struct

import pytest
import torch

from gossipfl.errors import ModelMismatch, PayloadTooLarge, WireError
from gossipfl.transports.wire import decode, encode

STATE = {"w": torch.randn(3, 4), "b": torch.zeros(3)}


def test_round_trip_keeps_tensors_and_metadata() -> None:
    body = encode(STATE, sender="p1", round_=7, num_samples=42, degree=3, weight=0.25)
    message = decode(body, STATE)
    assert (message.sender, message.round, message.num_samples, message.degree, message.weight) == (
        "p1",
        7,
        42,
        3,
        0.25,
    )
    assert torch.equal(message.tensors["w"], STATE["w"])


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"", WireError, "too short"),
        (b"not safetensors at all", WireError, "header length"),
        (struct.pack("<Q", 5) + b"{bad}", WireError, "not JSON"),
        (struct.pack("<Q", 2) + b"{}", WireError, "__metadata__"),
    ],
)
def test_malformed_bodies(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        decode(body, STATE)
    assert info.value.status == 400  # type: ignore[attr-defined]


def test_wrong_shape_dtype_names_and_nan_are_422() -> None:
    cases = [
        {"w": torch.randn(4, 3), "b": torch.zeros(3)},
        {"w": torch.randn(3, 4).double(), "b": torch.zeros(3)},
        {"w": torch.randn(3, 4)},
        {"w": torch.full((3, 4), float("nan")), "b": torch.zeros(3)},
        {"w": torch.full((3, 4), float("inf")), "b": torch.zeros(3)},
    ]
    for tensors in cases:
        with pytest.raises(ModelMismatch) as info:
            decode(encode(tensors, sender="p1", round_=1, num_samples=1), STATE)
        assert info.value.status == 422


def test_size_cap_is_413_and_bad_metadata_is_400() -> None:
    body = encode(STATE, sender="p1", round_=1, num_samples=1)
    with pytest.raises(PayloadTooLarge):
        decode(body, STATE, max_bytes=len(body) - 1)
    with pytest.raises(WireError, match="negative"):
        decode(encode(STATE, sender="p1", round_=-1, num_samples=1), STATE)
    with pytest.raises(ModelMismatch, match="push-sum weight"):
        decode(encode(STATE, sender="p1", round_=1, num_samples=1, weight=float("nan")), STATE)


def test_header_claiming_huge_length_is_refused_without_allocating() -> None:
    with pytest.raises(WireError, match="does not fit"):
        decode(struct.pack("<Q", 2**62) + b"{}", STATE)


def test_interoperates_with_the_safetensors_library() -> None:
    from safetensors.torch import load, save

    tensors = {
        "b": torch.randn(3),
        "a": torch.randn(2, 2).double(),
        "i": torch.arange(5),
        "e": torch.zeros(0),
    }
    ours = load(bytes(encode(tensors, sender="x", round_=1, num_samples=2)))
    assert all(torch.equal(ours[k], tensors[k]) for k in tensors)
    theirs = save(tensors, metadata={"format_version": "1", "sender": "y", "round": "3", "num_samples": "4"})
    message = decode(theirs, tensors)
    assert message.sender == "y" and all(torch.equal(message.tensors[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, "do not match"),
        ({"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}, "unsupported dtype"),
        ({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, "bad shape"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}, "gap or overlap"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "header describes"),
    ],
)
def test_hostile_headers_are_refused(entry: dict, message: str) -> None:  # type: ignore[type-arg]
    import json

    header = json.dumps(
        {"__metadata__": {"format_version": "1", "sender": "p", "round": "1", "num_samples": "1"}, "w": entry}
    ).encode()
    with pytest.raises(WireError, match=message):
        decode(struct.pack("<Q", len(header)) + header + bytes(8))


def _with_header(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def _entry_header(shape: str, offsets: str = "[0, 0]", **meta: str) -> bytes:
    metadata = {"format_version": "1", "sender": "p", "round": "1", "num_samples": "1", **meta}
    entry = f'{{"dtype": "F32", "shape": {shape}, "data_offsets": {offsets}}}'
    return f'{{"__metadata__": {json.dumps(metadata)}, "w": {entry}}}'.encode()


@pytest.mark.parametrize(
    "body",
    [
        _with_header(b"[" * 100_000),  # RecursionError in json.loads before
        _with_header(_entry_header("[" * 2000 + "]" * 2000)),  # an array nested 2,000 deep
        _with_header(b'{"__metadata__": {}, "n": ' + b"9" * 4342 + b"}"),  # ValueError from int()
        _with_header(_entry_header(f"[0, {2**63}]")),  # TypeError in reshape() before
        _with_header(_entry_header(f"[0, {2**63 - 1}]")),
        _with_header(_entry_header(f"[0, {2**40}, {2**40}]")),  # numel overflow in torch before
        _with_header(_entry_header("[true, 2]", "[0, 8]"), bytes(8)),  # bool is not a dimension
        _with_header(_entry_header("[2]", "[0, 8]", round=" 5 "), bytes(8)),  # int() accepts these
        _with_header(_entry_header("[2]", "[0, 8]", round="1_0"), bytes(8)),
        _with_header(_entry_header("[2]", "[0, 8]", num_samples="٣"), bytes(8)),
        _with_header(_entry_header("[2]", "[0, 8]", degree="1" * 30), bytes(8)),
        _with_header(_entry_header("[2]", "[0, 8]", weight="1_0"), bytes(8)),
        _with_header(_entry_header("[2]", "[0, 8]", sender="../../etc"), bytes(8)),
        _with_header(b'{"__metadata__": NaN}'),
    ],
    ids=[
        "100k-brackets",
        "2000-deep",
        "4342-digits",
        "dim-2**63-empty",
        "dim-2**63-1-empty",
        "numel-overflow",
        "bool-dim",
        "round-spaces",
        "round-underscore",
        "arabic-digit",
        "degree-30-digits",
        "weight-underscore",
        "sender-path",
        "nan-constant",
    ],
)
def test_fuzzer_findings_are_wire_errors(body: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode(body)
    assert info.value.status == 400


def test_header_checks_take_linear_time() -> None:
    import time

    # escaped quotes without an end once made the nesting scan quadratic (28 s for 40 kB)
    for header in (b'"' + b'\\"' * 100_000, b"[" * (1 << 19), b'"' * (1 << 19)):
        started = time.monotonic()
        with pytest.raises(WireError):
            decode(_with_header(header))
        assert time.monotonic() - started < 2.0
