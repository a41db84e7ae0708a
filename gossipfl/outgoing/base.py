"""The outgoing-transform interface (see the package docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["OutgoingTransform"]


class OutgoingTransform(Protocol):
    name: str

    def apply(self, models: Tensor, round_: int) -> Tensor:
        """What each of these N peers sends in ``round_``, (N, P), from their models (N, P).
        May return ``models`` itself; callers never write to the result."""
        ...
