"""Fuzz targets shared by the property tests (test_fuzz.py) and ``scripts/fuzz.py``.

Each target is a hypothesis strategy of inputs and a ``check`` that feeds one input to a
boundary of gossipfl and returns None when the boundary behaved (accepted the input, or
refused it with the project's error naming the file), else a description of the finding.
Inputs mix structures close to valid ones with byte-level mutations of valid files, which
reach far deeper into a parser than random bytes do.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from gossipfl.config import load_peer_config
from gossipfl.errors import ConfigError, WireError
from gossipfl.learning.datasets import load_dataset
from gossipfl.node.checkpoint import restore_checkpoint, save_checkpoint
from gossipfl.transports.wire import decode, encode
from topologies.graph_io import load_graph

TEMPLATE = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.zeros(3)}
VALID_MESSAGE = bytes(encode(TEMPLATE, sender="p1", round_=3, num_samples=10, degree=2))
CAP = 1 << 16
WORKDIR = Path(tempfile.mkdtemp(prefix="gossipfl-fuzz-"))


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    inputs: st.SearchStrategy[Any]
    check: Callable[[Any], str | None]


# -- mutations of valid bytes ----------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice", "repeat"]))
        at = draw(st.integers(0, max(0, len(data) - 1))) if data else 0
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(
                st.sampled_from([0, 0x20, 0x22, 0x2C, 0x2D, 0x30, 0x39, 0x5B, 0x5D, 0x7B, 0x7D, 0xFF])
            )
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            data[at:at] = draw(
                st.sampled_from([b'"', b"[[[[", b"]]", b"{}", b"-1", b"1e999", b"99999999999999999999"])
            )
        elif kind == "repeat" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 50))
    return bytes(data)


# -- the wire decoder ------------------------------------------------------------------

_JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_DIMS = st.one_of(
    st.integers(0, 5),
    st.sampled_from([2**31, 2**62, 2**63 - 1, 2**63, 2**64, -1]),
    _JSON_LEAF,
)


@st.composite
def safetensors_structures(draw: st.DrawFn) -> bytes:
    """A header of plausible keys with hostile values, and a data section."""
    meta = {"format_version": "1", "sender": "p1", "round": "3", "num_samples": "10"}
    for key in draw(st.lists(st.sampled_from([*meta, "degree", "weight"]), max_size=3)):
        meta[key] = draw(
            st.one_of(st.text(max_size=12), st.sampled_from([" 5 ", "1_0", "-5", "٣", "1e3", "nan"]))
        )
    header: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name in draw(st.lists(st.sampled_from(["w", "b", "x", "__metadata__"]), max_size=3, unique=True)):
        shape = draw(st.one_of(st.lists(_DIMS, max_size=4), _JSON_LEAF))
        size = draw(st.integers(0, 64))
        header[name] = {
            "dtype": draw(
                st.one_of(st.sampled_from(["F32", "F64", "I64", "BOOL", "U8", "F16", "X9"]), _JSON_LEAF)
            ),
            "shape": shape,
            "data_offsets": draw(st.one_of(st.just([offset, offset + size]), st.lists(_DIMS, max_size=3))),
        }
        offset += size
    text = json.dumps(header).encode()
    data = draw(st.binary(min_size=offset, max_size=offset + 8))
    length = draw(st.one_of(st.just(len(text)), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", length) + text + data


def check_wire(body: bytes) -> str | None:
    try:
        decode(body, TEMPLATE, CAP)
    except WireError as exc:
        if exc.status not in (400, 413, 422):
            return f"WireError with status {exc.status}"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


WIRE = Target(
    "wire",
    st.one_of(safetensors_structures(), mutated(VALID_MESSAGE), st.binary(max_size=256)),
    check_wire,
)


# -- checkpoints -----------------------------------------------------------------------


class _Optimizer:
    """Stands in for a trainer: accepts exactly a momentum tensor of the weights' size."""

    def load_optimizer_state(self, state: Any) -> None:
        if set(state) - {"momentum"}:
            raise ValueError("unknown optimizer tensors")
        if "momentum" in state and tuple(state["momentum"].shape) != (15,):
            raise ValueError("momentum has the wrong shape")


def _valid_checkpoint() -> bytes:
    path = WORKDIR / "seed.safetensors"
    save_checkpoint(path, 4, TEMPLATE, {"momentum": torch.zeros(15)}, "a")
    return path.read_bytes()


VALID_CHECKPOINT = _valid_checkpoint()


def _named_error(path: Path, call: Callable[[], object], expected: type[Exception]) -> str | None:
    try:
        call()
    except expected as exc:
        if str(path) not in str(exc):
            return f"{type(exc).__name__} does not name the file: {str(exc)[:200]}"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def check_checkpoint(data: bytes) -> str | None:
    path = WORKDIR / "checkpoint.safetensors"
    path.write_bytes(data)
    return _named_error(path, lambda: restore_checkpoint(path, "a", TEMPLATE, _Optimizer()), ConfigError)


CHECKPOINT = Target(
    "checkpoint",
    st.one_of(mutated(VALID_CHECKPOINT), safetensors_structures(), st.binary(max_size=128)),
    check_checkpoint,
)


# -- peer TOML -------------------------------------------------------------------------

VALID_TOML = b"""id = "p0"
listen = "127.0.0.1:7000"
output_dir = "out/p0"

[[neighbors]]
id = "p1"
url = "http://127.0.0.1:7001"

[data]
dataset = "iris"
partition = "dirichlet"
part = 0
parts = 2
alpha = 0.5

[train]
model = "mlp"
hidden = [8, 8]
rounds = 3

[network]
round_timeout_s = 2.0
max_connections = 10
"""

_TOML_VALUE = st.recursive(
    _JSON_LEAF.filter(lambda v: v is not None),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def toml_documents(draw: st.DrawFn) -> bytes:
    import tomli_w

    doc: dict[str, Any] = {"id": "p0", "listen": "127.0.0.1:7000"}
    for table, keys in [
        ("", ["id", "listen", "output_dir", "neighbors"]),
        ("data", ["dataset", "partition", "part", "parts", "alpha", "hospitals", "test_fraction"]),
        ("train", ["model", "hidden", "rounds", "lr", "momentum", "mode"]),
        ("network", ["round_timeout_s", "max_body_mb", "header_timeout_s", "max_connections"]),
        ("tls", ["ca", "cert", "key"]),
    ]:
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3))
        target = doc if not table else doc.setdefault(table, {})
        for key in chosen:
            target[key] = draw(_TOML_VALUE)
    try:
        return tomli_w.dumps(doc).encode()
    except (TypeError, ValueError):
        return VALID_TOML


def check_toml(data: bytes) -> str | None:
    path = WORKDIR / "peer.toml"
    path.write_bytes(data)
    return _named_error(path, lambda: load_peer_config(path), ConfigError)


TOML = Target(
    "peer-toml",
    st.one_of(toml_documents(), mutated(VALID_TOML), st.binary(max_size=128)),
    check_toml,
)


# -- graph files -----------------------------------------------------------------------

VALID_EDGES = b"# directed\na b\nb c\nc a\nd\n"
VALID_JSON = b'{"a": ["b", "c"], "b": ["a"], "c": ["a"]}'
VALID_GRAPHML = b"""<?xml version='1.0' encoding='utf-8'?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph edgedefault="undirected">
<node id="a"/><node id="b"/><edge source="a" target="b"/></graph></graphml>
"""


def check_graph(case: tuple[str, bytes]) -> str | None:
    suffix, data = case
    path = WORKDIR / f"graph{suffix}"
    path.write_bytes(data)
    return _named_error(path, lambda: load_graph(path), ValueError)


GRAPH = Target(
    "graph",
    st.one_of(
        st.tuples(st.just(".edges"), st.one_of(mutated(VALID_EDGES), st.binary(max_size=64))),
        st.tuples(st.just(".json"), st.one_of(mutated(VALID_JSON), st.binary(max_size=64))),
        st.tuples(st.just(".graphml"), mutated(VALID_GRAPHML)),
    ),
    check_graph,
)


# -- npz and csv datasets --------------------------------------------------------------


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


VALID_NPZ = _npz(X=np.arange(40, dtype=np.float32).reshape(10, 4), y=np.arange(10) % 2)
VALID_CSV = b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n"


@st.composite
def npz_archives(draw: st.DrawFn) -> bytes:
    dtype = draw(st.sampled_from(["f4", "f8", "i8", "u1", "?", "U3", "c8", "V4", "M8[s]"]))
    n = draw(st.integers(0, 6))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    x = np.zeros((n, *shape), dtype=dtype)
    y = np.zeros(draw(st.integers(0, 6)), dtype=draw(st.sampled_from(["i8", "f4", "U2", "?"])))
    names = draw(st.sampled_from([("X", "y"), ("X",), ("x", "y"), ("X", "y", "z")]))
    arrays = dict(zip(names, [x, y, y], strict=False))
    return _npz(**arrays)


def check_dataset(case: tuple[str, bytes]) -> str | None:
    kind, data = case
    path = WORKDIR / f"data.{kind}"
    path.write_bytes(data)
    return _named_error(path, lambda: load_dataset(f"{kind}:{path}"), ConfigError)


DATASET = Target(
    "dataset",
    st.one_of(
        st.tuples(st.just("npz"), st.one_of(npz_archives(), mutated(VALID_NPZ), st.binary(max_size=64))),
        st.tuples(st.just("csv"), st.one_of(mutated(VALID_CSV), st.binary(max_size=64))),
    ),
    check_dataset,
)

TARGETS = [WIRE, CHECKPOINT, TOML, GRAPH, DATASET]
