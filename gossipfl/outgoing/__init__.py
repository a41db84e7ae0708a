"""Outgoing transforms: what a peer sends its neighbours, computed from its model.

``apply(models, round_)`` maps the (N, P) stack of models to the (N, P) stack of what those
peers send in round ``round_``; the vectorized simulator applies it to every peer at once and a
real peer to its own single row before encoding, so both send exactly the same. ``identity``
sends the model itself; privacy noise, masks or compression are further modules here.

Adding a transform: one module in this package and one line in ``TRANSFORMS``.
"""

from __future__ import annotations

from gossipfl.outgoing.base import OutgoingTransform
from gossipfl.outgoing.identity import Identity

__all__ = ["TRANSFORMS", "Identity", "OutgoingTransform", "make_transform"]

TRANSFORMS: dict[str, type[OutgoingTransform]] = {
    "identity": Identity,
}


def make_transform(name: str) -> OutgoingTransform:
    if name not in TRANSFORMS:
        raise ValueError(f"unknown outgoing transform {name!r}; use one of {', '.join(TRANSFORMS)}")
    return TRANSFORMS[name]()
