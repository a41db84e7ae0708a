"""A peer's model state, and the bridge between named tensors and the rules' flat rows.

Combine rules and outgoing transforms work on (N, P) rows (``gossipfl.rules``); a peer holds
named tensors (its model's state dict). ``Layout`` converts between the two, so a real peer
runs exactly the code the vectorized simulator runs, with N = 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from gossipfl.outgoing import OutgoingTransform
from gossipfl.rules import CombineRule

__all__ = ["Layout", "ModelState"]

Tensors = dict[str, torch.Tensor]


class Layout:
    """Names, shapes and dtypes of a model's tensors, in a fixed order."""

    def __init__(self, template: Mapping[str, torch.Tensor]) -> None:
        self.names = list(template)
        self.shapes = [tuple(t.shape) for t in template.values()]
        self.dtypes = [t.dtype for t in template.values()]
        self.sizes = [t.numel() for t in template.values()]

    def row(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The tensors as one float32 row of shape (1, P)."""
        return torch.cat([tensors[n].detach().reshape(-1).float() for n in self.names]).unsqueeze(0)

    def rows(self, states: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """Several states as (1, K, P): what one peer received (one copy of each)."""
        out = torch.empty(1, len(states), sum(self.sizes))
        for k, state in enumerate(states):
            torch.cat([state[n].detach().reshape(-1) for n in self.names], out=out[0, k])
        return out

    def tensors(self, row: torch.Tensor) -> Tensors:
        """A (1, P) or (P,) row back as named tensors of the template's shapes and dtypes:
        views of ``row`` where the dtype is the row's (the caller hands the row over)."""
        parts = torch.split(row.reshape(-1), self.sizes)
        return {
            n: p.reshape(shape).to(dtype)
            for n, p, shape, dtype in zip(self.names, parts, self.shapes, self.dtypes, strict=True)
        }


class ModelState:
    """The peer's authoritative model; for push-sum also its numerator and mass (the model
    is numerator / mass)."""

    def __init__(self, weights: Tensors, *, push_sum: bool) -> None:
        self.layout = Layout(weights)
        self.weights = weights
        self.numerator: Tensors | None = {k: v.clone() for k, v in weights.items()} if push_sum else None
        self.mass = 1.0
        # The row the last mix produced and the tensors that view it: mixing again starts
        # from it instead of concatenating the tensors (a copy of the whole model).
        self._mixed: tuple[Tensors, torch.Tensor] | None = None

    def _row(self, tensors: Tensors) -> torch.Tensor:
        if self._mixed is not None and self._mixed[0] is tensors:
            return self._mixed[1]
        return self.layout.row(tensors)

    def sendable(self) -> Tensors:
        """What the algorithm sends: the numerator for push-sum, else the model."""
        return self.numerator if self.numerator is not None else self.weights

    def outgoing(self, transform: OutgoingTransform, round_: int) -> Tensors:
        """What this peer sends in ``round_`` after the outgoing transform."""
        state = self.sendable()
        row = self._row(state)
        sent = transform.apply(row, round_)
        return state if sent is row else self.layout.tensors(sent)

    def trained(self, start: Tensors, trained: Tensors, *, keep_arrivals: bool) -> None:
        """Adopt a local training result that started from ``start``."""
        if self.numerator is not None:  # push-sum SGD: the numerator moves as the model did
            self.numerator = {k: self.numerator[k] + (trained[k] - start[k]) for k in trained}
        if keep_arrivals:  # async: keep whatever pairwise averages arrived while training ran
            self.weights = {k: self.weights[k] + (trained[k] - start[k]) for k in trained}
        else:
            self.weights = trained

    def combine(
        self,
        rule: CombineRule,
        received: Sequence[Mapping[str, torch.Tensor]],
        weights: Sequence[float],
        self_weight: float,
        masses: Sequence[float] = (),
    ) -> None:
        """Mix ``received`` into this state with ``rule`` (for push-sum, into the numerator,
        and the senders' ``masses`` into the mass)."""
        w = torch.tensor([list(weights)], dtype=torch.float64).reshape(1, len(weights))
        own_w = torch.tensor([self_weight], dtype=torch.float64)
        own = self._row(self.sendable())
        row = rule.combine(own, self.layout.rows(received), w, own_w)
        mixed = self.layout.tensors(row)
        self._mixed = (mixed, row)
        if self.numerator is None:
            self.weights = mixed
            return
        mass = rule.combine(
            torch.tensor([[self.mass]], dtype=torch.float64),
            torch.tensor([[[m] for m in masses]], dtype=torch.float64).reshape(1, len(masses), 1),
            w,
            own_w,
        )
        self.numerator, self.mass = mixed, float(mass[0, 0])
        self.weights = {k: (v / self.mass).to(v.dtype) for k, v in mixed.items()}
