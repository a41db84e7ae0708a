"""Property tests of every boundary that reads bytes a user or attacker controls.

Each target (see fuzz_targets.py) must accept an input or refuse it with the project's
error naming the file; nothing else may escape. Bounded so the whole file runs in well
under a minute on two cores; ``scripts/fuzz.py --minutes N`` runs the same targets longer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

_PATH = Path(__file__).with_name("fuzz_targets.py")
_SPEC = importlib.util.spec_from_file_location("fuzz_targets", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
targets = importlib.util.module_from_spec(_SPEC)
sys.modules["fuzz_targets"] = targets
_SPEC.loader.exec_module(targets)

EXAMPLES = {"wire": 300, "checkpoint": 200, "peer-toml": 200, "graph": 150, "dataset": 150}


@pytest.mark.parametrize("target", targets.TARGETS, ids=lambda t: t.name)
def test_boundary_raises_only_the_project_errors(target: Any) -> None:
    @settings(
        max_examples=EXAMPLES[target.name],
        deadline=2000,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(target.inputs)
    def check(case: object) -> None:
        assert target.check(case) is None

    check()


def test_the_issue_inputs_stay_in_the_error_tree() -> None:
    deep = b'{"__metadata__": {}, "w": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    for header in (b"[" * 100_000, deep, b'{"n": ' + b"1" * 4342 + b"}"):
        assert targets.check_wire(len(header).to_bytes(8, "little") + header) is None
    for round_ in ("-5", "abc", " 5 ", "1_0"):
        data = bytearray(targets.VALID_CHECKPOINT)
        data = data.replace(b'"round":"4"', b'"round":"%s"' % round_.encode())
        assert targets.check_checkpoint(bytes(data)) is None


def test_an_npz_with_an_unsupported_compression_method_is_a_config_error() -> None:
    import struct

    data = bytearray(targets.VALID_NPZ)
    # compression method 99 in every local header and central directory entry (the
    # 10-minute fuzz run found zipfile's NotImplementedError escaping this way)
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        while at != -1:
            data[at + offset : at + offset + 2] = struct.pack("<H", 99)
            at = data.find(signature, at + 4)
    assert targets.check_dataset(("npz", bytes(data))) is None
