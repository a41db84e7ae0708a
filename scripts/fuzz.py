"""Longer fuzzing of gossipfl's input boundaries than the test suite runs.

    python3 scripts/fuzz.py --minutes 10 [--target wire]

Runs the targets of tests/gossipfl/fuzz_targets.py (the wire decoder, checkpoints, peer
TOML, graph files, npz/csv datasets) in turn until the time is up, and prints, per target,
how many inputs were tried and every distinct finding: an input that made a boundary raise
something other than the project's error naming the file. Exits 1 if anything was found.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

ROOT = Path(__file__).resolve().parent.parent
_BATCH = 200
_TURN_S = 10.0

Findings = dict[tuple[str, str], tuple[int, object]]


def _targets() -> list[Any]:
    sys.path.insert(0, str(ROOT))
    path = ROOT / "tests" / "gossipfl" / "fuzz_targets.py"
    spec = importlib.util.spec_from_file_location("fuzz_targets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_targets"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return list(module.TARGETS)


def _runner(target: Any, tried: collections.Counter[str], findings: Findings) -> Callable[[], None]:
    """A hypothesis test trying ``_BATCH`` inputs, recording findings instead of failing."""

    @settings(
        max_examples=_BATCH,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(target.inputs)
    def run(case: object) -> None:
        tried[target.name] += 1
        finding = target.check(case)
        if finding is not None:
            # One finding per exception class (and whether it named the file).
            key = (target.name, finding.split(":")[0])
            count, example = findings.get(key, (0, case))
            findings[key] = (count + 1, example)

    return run  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--target", action="append", help="only these targets (repeatable)")
    args = parser.parse_args(argv)
    targets = [t for t in _targets() if not args.target or t.name in args.target]
    tried: collections.Counter[str] = collections.Counter()
    findings: Findings = {}
    runs = {t.name: _runner(t, tried, findings) for t in targets}
    warnings.simplefilter("ignore")  # libraries' warnings about hostile files are expected
    started = time.monotonic()
    deadline = started + args.minutes * 60
    # Equal time, not equal inputs: the decoder runs far faster than loaders writing files.
    while time.monotonic() < deadline:
        for target in targets:
            turn_ends = min(deadline, time.monotonic() + _TURN_S)
            while time.monotonic() < turn_ends:
                runs[target.name]()
    elapsed = time.monotonic() - started
    total = sum(tried.values())
    print(f"{total} inputs in {elapsed:.0f}s ({total / max(elapsed, 1e-9):.0f}/s)")
    for target in targets:
        found = [(k[1], v) for k, v in findings.items() if k[0] == target.name]
        print(f"  {target.name:<11} {tried[target.name]:>9} inputs  {len(found)} distinct findings")
        for description, (count, example) in found:
            print(f"      {count:>6} x {description}")
            print(f"             e.g. {example!r:.300}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
