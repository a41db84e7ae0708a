"""JSON-lines files (a peer's and a run's metrics.jsonl): one object a line, NaN as null."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

__all__ = ["JsonlWriter", "clean"]


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
