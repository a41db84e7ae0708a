"""JSON-lines files (a peer's and a run's metrics.jsonl): one object a line, NaN as null."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TextIO

__all__ = ["JsonlWriter", "clean"]


def clean(value: Any) -> Any:
    # JSON has no NaN: a metric that could not be computed is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Appends one JSON object a line, flushed per row so a crash loses nothing written."""

    def __init__(self, path: Path, append: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: TextIO = path.open("a" if append else "w", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps({k: clean(v) for k, v in row.items()}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
