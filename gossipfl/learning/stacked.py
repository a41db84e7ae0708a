"""N copies of one model as rows of one tensor, trained together in one batched call.

The simulator's vectorized engine trains thousands of peers with this, and a real peer's
built-in trainer is the same code with N = 1, so both compute identical local steps.

``StackedModels.flat`` is an (N, P) tensor: row i is peer i's parameters, flattened. Each
named parameter is a view into it, so ``torch.func.vmap`` trains every peer at once through
``functional_call``, and gossip is one sparse product ``W @ flat`` with no copying between
layouts. ``PeerData`` pads each peer's sample indices into one matrix, so drawing every
peer's minibatch is a single gather.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from gossipfl.learning.consensus import consensus_distance
from gossipfl.learning.sampling import stream_id, uniform

__all__ = ["PEER_EVAL_SAMPLES", "Batch", "PeerData", "StackedModels"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (N,B,d), y (N,B), sample weight (N,B)

# Each peer's own model is scored on at most this many test samples: evaluation costs
# peers x samples forward passes, which at 10,000 peers would dwarf training. The averaged
# model is always scored on the whole test set.
PEER_EVAL_SAMPLES = 1000
# Peer evaluation runs over chunks of peers so that chunk * test-set activations stay near
# this many floats, whatever N is.
_EVAL_FLOATS = 1 << 22
# A training step handles at most this many parameters' gradients at once.
_STEP_FLOATS = 1 << 24


class PeerData:
    """Some peers' training samples, padded into a (peers, max_len) index matrix.

    ``peer_ids`` are the peers' global indices (0..N-1): draws depend on them, not on the
    row, so a single peer holding only its own part draws exactly what the simulator draws
    for it among thousands.
    """

    def __init__(
        self,
        parts: list[np.ndarray],
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        *,
        seed: int = 0,
        peer_ids: list[int] | None = None,
    ) -> None:
        self.x = x.to(device)
        self.y = y.to(device)
        self.seed = seed
        self.lengths = torch.tensor([len(p) for p in parts], device=device)
        width = int(self.lengths.max())
        index = np.zeros((len(parts), width), dtype=np.int64)
        for i, p in enumerate(parts):
            index[i, : len(p)] = p
        self.index = torch.from_numpy(index).to(device)
        ids = range(len(parts)) if peer_ids is None else peer_ids
        self.peer_ids = torch.tensor(list(ids), dtype=torch.int64, device=device)

    @property
    def peers(self) -> int:
        return len(self.lengths)

    def sample(self, batch: int, stream: int) -> Batch:
        """One minibatch per peer, drawn uniformly (with replacement) from its own samples."""
        u = uniform(self.seed, stream, self.peer_ids, batch)
        pos = (u * self.lengths[:, None]).long()
        idx = self.index.gather(1, pos)
        weight = torch.ones(idx.shape, device=idx.device)
        return self.x[idx], self.y[idx], weight

    def epoch(self, batch: int, stream: int) -> Iterator[Batch]:
        """One pass over every peer's data in its own random order; short peers get masked
        (zero-weight) samples once their data runs out."""
        keys = uniform(self.seed, stream, self.peer_ids, self.index.shape[1])
        column = torch.arange(self.index.shape[1], device=keys.device)
        keys[column[None, :] >= self.lengths[:, None]] = 2.0  # padding sorts last
        order = keys.argsort(dim=1, stable=True)
        for start in range(0, int(self.lengths.max()), batch):
            pos = order[:, start : start + batch]
            idx = self.index.gather(1, pos)
            valid = (column[start : start + pos.shape[1]][None, :] < self.lengths[:, None]).float()
            yield self.x[idx], self.y[idx], valid

    def batches(self, round_: int, steps: int, epochs: int, batch: int) -> Iterator[Batch]:
        """Round ``round_``'s minibatches: ``epochs`` passes if positive, else ``steps`` draws."""
        if epochs > 0:
            for e in range(epochs):
                yield from self.epoch(batch, stream_id(round_, e))
        else:
            for s in range(steps):
                yield self.sample(batch, stream_id(round_, s))


class StackedModels:
    """Parameters of N peers' copies of ``model``, stacked row-wise in ``flat``."""

    def __init__(
        self,
        model: nn.Module,
        peers: int,
        *,
        init: str = "shared",
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        if list(self.model.buffers()):
            raise ValueError("stacked training supports models without buffers (no batch norm)")
        named = dict(self.model.named_parameters())
        self.names = list(named)
        self.shapes = [tuple(p.shape) for p in named.values()]
        self.sizes = [p.numel() for p in named.values()]
        self.num_params = sum(self.sizes)
        self.flat = torch.empty(peers, self.num_params, device=self.device)
        if init == "shared":
            self.flat.copy_(self.flatten(named).expand(peers, -1))
        elif init == "independent":
            self._independent_init(seed)
        else:
            raise ValueError(f"init must be shared or independent, got {init!r}")
        self.params = self.views(self.flat)
        self.momentum: torch.Tensor | None = None
        self._grad = vmap(grad_and_value(self._loss))

    @property
    def peers(self) -> int:
        return int(self.flat.shape[0])

    def replace(self, flat: torch.Tensor) -> None:
        """Adopt ``flat`` (same shape) as the parameters: swapping beats copying 10^8 floats."""
        if flat.shape != self.flat.shape:
            raise ValueError(f"expected shape {tuple(self.flat.shape)}, got {tuple(flat.shape)}")
        self.flat = flat.to(self.flat.dtype).contiguous()
        self.params = self.views(self.flat)

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names]).to(self.device)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named (N, *shape) views into an (N, P) tensor laid out like ``self.flat``."""
        out, offset = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = flat[:, offset : offset + size].view(flat.shape[0], *shape)
            offset += size
        return out

    def unflatten(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One peer's parameters (a P-vector) as a state dict."""
        return {k: v[0] for k, v in self.views(row.reshape(1, -1)).items()}

    def _independent_init(self, seed: int) -> None:
        # PyTorch's default Linear/Conv init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
        # and biases alike; drawing it for all rows at once avoids building N modules.
        gen = torch.Generator(device="cpu").manual_seed(seed)
        fan_in = {}
        for name, shape in zip(self.names, self.shapes, strict=True):
            if len(shape) > 1:
                fan_in[name.rsplit(".", 1)[0]] = math.prod(shape[1:])
        columns = []
        for name, size in zip(self.names, self.sizes, strict=True):
            bound = 1.0 / math.sqrt(fan_in.get(name.rsplit(".", 1)[0], size))
            columns.append((torch.rand(self.peers, size, generator=gen) * 2 - 1) * bound)
        self.flat.copy_(torch.cat(columns, dim=1))

    def _loss(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        losses = F.cross_entropy(functional_call(self.model, params, (x,)), y, reduction="none")
        loss: torch.Tensor = (losses * w).sum() / w.sum().clamp_min(1.0)
        return loss

    def step(self, batch: Batch, lr: float, momentum: float, active: torch.Tensor) -> torch.Tensor:
        """One SGD step for every peer with ``active`` true; returns each peer's loss.

        Peers are processed in blocks of at most ``_STEP_FLOATS`` parameters, so gradients
        and activations for 10,000 peers never exist all at once (one block up to ~1,800
        peers of a 9k-parameter MLP, so smaller runs pay nothing for it).
        """
        if momentum and self.momentum is None:
            self.momentum = torch.zeros_like(self.flat)
        block = max(1, _STEP_FLOATS // self.num_params)
        losses = [
            self._step_block(slice(start, start + block), batch, lr, momentum, active)
            for start in range(0, self.peers, block)
        ]
        return losses[0] if len(losses) == 1 else torch.cat(losses)

    def _step_block(
        self, rows: slice, batch: Batch, lr: float, momentum: float, active: torch.Tensor
    ) -> torch.Tensor:
        x, y, w = (t[rows] for t in batch)
        params = self.params if rows.start == 0 and rows.stop >= self.peers else self.views(self.flat[rows])
        grads: dict[str, torch.Tensor]
        losses: torch.Tensor
        grads, losses = self._grad(params, x, y, w)
        # A peer that is dropped, or has no real sample in this batch, must not move.
        moving = active[rows] & (w.sum(dim=1) > 0)
        everyone = bool(moving.all())
        buffers = self.views(self.momentum[rows]) if momentum and self.momentum is not None else {}
        for name, g in grads.items():
            param = params[name]
            if everyone:  # the common case: fused in-place updates, no temporaries
                if momentum:
                    g = buffers[name].mul_(momentum).add_(g)
                param.sub_(g, alpha=lr)
                continue
            mask = moving.view(-1, *([1] * (g.dim() - 1)))
            if momentum:
                buf = buffers[name]
                buf.copy_(torch.where(mask, buf * momentum + g, buf))
                g = buf
            param.sub_(torch.where(mask, g, 0.0), alpha=lr)
        return losses

    def accuracy(self, flat_row: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of one parameter vector on (x, y)."""
        with torch.no_grad():
            logits = functional_call(self.model, self.unflatten(flat_row), (x,))
        return float((logits.argmax(dim=1) == y).float().mean())

    def evaluate(self, mean: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """The simulator's per-round metrics of these peers: their consensus distance, the
        accuracy of ``mean`` (their average) on (x, y), and their own accuracies."""
        own = self.peer_accuracies(x[:PEER_EVAL_SAMPLES], y[:PEER_EVAL_SAMPLES])
        return {
            "consensus_distance": consensus_distance(self.flat),
            "test_accuracy": self.accuracy(mean, x, y),
            "peer_accuracy_mean": float(own.mean()),
            "peer_accuracy_min": float(own.min()),
        }

    def peer_accuracies(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Accuracy of every peer's own model on (x, y), in chunks of peers."""
        width = max(p.shape[0] for p in self.model.parameters())
        chunk = max(1, _EVAL_FLOATS // max(1, len(x) * width))
        forward = vmap(lambda p: functional_call(self.model, p, (x,)))
        out = []
        with torch.no_grad():
            for start in range(0, self.peers, chunk):
                logits = forward(self.views(self.flat[start : start + chunk]))
                out.append((logits.argmax(dim=2) == y[None, :]).float().mean(dim=1))
        return torch.cat(out)
