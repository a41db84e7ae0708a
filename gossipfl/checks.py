"""Field checks the config dataclasses run in ``__post_init__``.

Each returns the value (a real number as ``float``) or raises ``ConfigError`` with the field's
name and the problem, so a value gets the same check whether it came from a TOML file, a
command-line flag or Python. Types are checked too: a file or a caller can hand over anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from gossipfl.errors import ConfigError

__all__ = ["integer", "one_of", "real", "text"]


def integer(field: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"expected an integer, got {value!r}", field)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"must be {bound}, got {value}", field)
    return value


def real(
    field: str,
    value: object,
    low: float,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (closed unless ``*_open``)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"expected a number, got {value!r}", field)
    number = float(value)
    above = number > low if low_open else number >= low
    below = high is None or (number < high if high_open else number <= high)
    if not (math.isfinite(number) and above and below):
        if high is None:
            bound = f"{'>' if low_open else '>='} {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"must be {bound}, got {value!r}", field)
    return number


def text(field: str, value: object) -> str:
    """``value`` if it is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a non-empty string, got {value!r}", field)
    return value


def one_of(field: str, value: object, names: Iterable[str]) -> str:
    """``value`` if it is one of ``names`` (a registry's keys)."""
    allowed = tuple(names)
    if value not in allowed:
        raise ConfigError(f"must be one of {', '.join(allowed)}, got {value!r}", field)
    return str(value)
