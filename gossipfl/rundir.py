"""The run directory: ``config.json`` (everything needed to rerun) and ``metrics.jsonl``
(one JSON object per evaluated round per run)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

__all__ = ["METRIC_KEYS", "JsonlWriter", "MetricsWriter", "clean", "read_run", "write_config"]

METRIC_KEYS = (
    "algorithm",
    "topology",
    "peers",
    "round",
    "consensus_distance",
    "test_accuracy",
    "peer_accuracy_mean",
    "peer_accuracy_min",
    "train_loss",
    "bytes_sent",
    "elapsed_s",
)


def write_config(run: Path, config: dict[str, Any]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    path = run / "config.json"
    path.write_text(json.dumps(config, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def clean(value: Any) -> Any:
    # JSON has no NaN: a metric that could not be computed is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Appends one JSON object a line, flushed per row so a crash loses nothing written.

    The file is readable by its owner only (0600, in a directory created 0700): a peer's
    metrics describe its private data."""

    def __init__(self, path: Path, append: bool = False) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # a file left by an older version may be wider
        self._handle: TextIO = os.fdopen(fd, "a" if append else "w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps({k: clean(v) for k, v in row.items()}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MetricsWriter(JsonlWriter):
    """``RUN/metrics.jsonl`` with exactly the simulator's keys, in their order."""

    def __init__(self, run: Path) -> None:
        super().__init__(run / "metrics.jsonl")

    def write(self, row: dict[str, Any]) -> None:
        super().write({k: row.get(k) for k in METRIC_KEYS})


def read_run(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(config, rows) of a run directory; ValueError naming the file on problems."""
    config_path, metrics_path = run / "config.json", run / "metrics.jsonl"
    if not metrics_path.is_file():
        raise ValueError(f"{run}: not a run directory (no metrics.jsonl)")
    config: dict[str, Any] = {}
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
    rows = []
    for number, line in enumerate(metrics_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{metrics_path}:{number}: not JSON ({exc.msg})") from exc
    return config, rows
