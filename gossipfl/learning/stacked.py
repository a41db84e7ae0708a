"""N copies of one model as rows of one tensor, trained together in one batched call.

The simulator's vectorized engine trains thousands of peers with this, and a real peer's
built-in trainer is the same code with N = 1, so both compute identical local steps.

``StackedModels.flat`` is an (N, width) tensor: row i is peer i's model, flattened. Each named
tensor is a view into it, so ``torch.func.vmap`` trains every peer at once through
``functional_call``, and gossip is one sparse product ``W @ flat`` with no copying between
layouts. ``PeerData`` pads each peer's sample indices into one matrix, so drawing every
peer's minibatch is a single gather.

Any ``nn.Module`` can be stacked; every parameter is trained (frozen parameters are
refused). What happens to its buffers:

- Floating-point buffers (BatchNorm's ``running_mean`` and ``running_var``) belong to each
  peer. They sit in ``flat`` after the parameters, so a row is
  ``[parameters | float buffers]``: ``num_params`` columns of parameters, ``width`` columns
  in all. Each peer's own training step updates its own buffers (the module runs in train
  mode, as in plain torch); evaluation runs the module in eval mode on those buffers; and
  whatever mixes ``flat`` (gossip, FedAvg, the averaged model) mixes them exactly like
  parameters. ``names``, ``views``, ``unflatten`` and ``flatten`` cover parameters then
  float buffers, so a real peer's weights, its messages and its checkpoints carry them.
  Gradients and momentum cover the parameters only.
- Other buffers (BatchNorm's integer ``num_batches_tracked``) are per peer and local: kept
  in ``local``, updated by the peer's own steps, never averaged and never sent.
- A peer that does not move in a step (dropped, or without a real sample) keeps its
  buffers too. Batch statistics are each peer's own over its minibatch. When a short
  peer's last batch of an epoch is padded (zero weight in the loss), the padding repeats
  that peer's own samples: its statistics never see another peer's data, but they do see
  the repeats, where plain torch would use a shorter last batch.

The loss is ``loss_fn(outputs, targets)``, one loss per sample (default: cross-entropy);
a step minimises its sample-weighted mean. It runs under ``torch.func.vmap``, so it must be
written with tensor operations that never read a value back into Python (``F.one_hot``
does: write ``torch.eye(classes)[targets]``). Random layers (dropout) draw different
numbers for every peer from torch's global generator, so they are not reproducible
between engines. Evaluation's accuracy is classification accuracy: the argmax of the
outputs against integer targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from gossipfl.learning.consensus import consensus_distance
from gossipfl.learning.sampling import stream_id, uniform

__all__ = ["PEER_EVAL_SAMPLES", "Batch", "LossFn", "PeerData", "StackedModels", "cross_entropy"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x (N,B,d), y (N,B), sample weight (N,B)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs, targets) -> per-sample

# Each peer's own model is scored on at most this many test samples: evaluation costs
# peers x samples forward passes, which at 10,000 peers would dwarf training. The averaged
# model is always scored on the whole test set.
PEER_EVAL_SAMPLES = 1000
# Peer evaluation runs over chunks of peers so that chunk * test-set activations stay near
# this many floats, whatever N is.
_EVAL_FLOATS = 1 << 22
# A training step handles at most this many parameters' gradients at once.
_STEP_FLOATS = 1 << 24


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The default loss: cross-entropy of logits against class indices, one per sample."""
    return F.cross_entropy(outputs, targets, reduction="none")


def _take(samples: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``samples[idx]``. index_select copies whole rows: on CPU about 3x faster than
    advanced indexing, which gathers element by element."""
    return samples.index_select(0, idx.reshape(-1)).view(*idx.shape, *samples.shape[1:])


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
            # Padding repeats the peer's own samples: it has zero weight in the loss, but
            # batch statistics (BatchNorm) see it and must never see another peer's data.
            index[i] = np.resize(p, width) if len(p) else 0
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
        return _take(self.x, idx), _take(self.y, idx), weight

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
            yield _take(self.x, idx), _take(self.y, idx), valid

    def batches(self, round_: int, steps: int, epochs: int, batch: int) -> Iterator[Batch]:
        """Round ``round_``'s minibatches: ``epochs`` passes if positive, else ``steps`` draws."""
        if epochs > 0:
            for e in range(epochs):
                yield from self.epoch(batch, stream_id(round_, e))
        else:
            for s in range(steps):
                yield self.sample(batch, stream_id(round_, s))


class StackedModels:
    """N peers' copies of ``model``, stacked row-wise in ``flat`` (see the module docstring
    for the row layout and what happens to buffers)."""

    def __init__(
        self,
        model: nn.Module,
        peers: int,
        *,
        init: str = "shared",
        seed: int = 0,
        device: torch.device | None = None,
        loss_fn: LossFn = cross_entropy,
    ) -> None:
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        named = dict(self.model.named_parameters())
        frozen = [n for n, p in named.items() if not p.requires_grad]
        if frozen:
            raise ValueError(f"stacked training trains every parameter; frozen: {', '.join(frozen)}")
        buffers = dict(self.model.named_buffers())
        floats = {n: b for n, b in buffers.items() if b.is_floating_point()}
        tensors = {**named, **floats}
        self.names = list(tensors)
        self.shapes = [tuple(t.shape) for t in tensors.values()]
        self.sizes = [t.numel() for t in tensors.values()]
        self.num_params = sum(p.numel() for p in named.values())  # the trained columns
        self.width = sum(self.sizes)  # parameters then float buffers
        self._trained = len(named)
        self.local = {
            n: b.detach().expand(peers, *b.shape).clone() for n, b in buffers.items() if n not in floats
        }
        self.flat = torch.empty(peers, self.width, device=self.device)
        if init == "shared":
            self.flat.copy_(self.flatten(tensors).expand(peers, -1))
        elif init == "independent":
            self._independent_init(seed, tensors)
        else:
            raise ValueError(f"init must be shared or independent, got {init!r}")
        self.params = self.views(self.flat)
        self.momentum: torch.Tensor | None = None
        # "different": a random layer (dropout) draws independently for every peer.
        self._grad = vmap(grad_and_value(self._loss), randomness="different")

    @property
    def peers(self) -> int:
        return int(self.flat.shape[0])

    def replace(self, flat: torch.Tensor) -> None:
        """Adopt ``flat`` (same shape) as the models: swapping beats copying 10^8 floats."""
        if flat.shape != self.flat.shape:
            raise ValueError(f"expected shape {tuple(self.flat.shape)}, got {tuple(flat.shape)}")
        self.flat = flat.to(self.flat.dtype).contiguous()
        self.params = self.views(self.flat)

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One peer's named tensors (parameters and float buffers) as a row of ``flat``."""
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names]).to(self.device)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named (N, *shape) views into an (N, width) tensor laid out like ``self.flat``."""
        return self._views(flat, len(self.names))

    def _views(self, flat: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
        """Views of the first ``count`` named tensors (``self._trained``: the parameters)."""
        out, offset = {}, 0
        for name, shape, size in zip(self.names[:count], self.shapes, self.sizes, strict=False):
            out[name] = flat[:, offset : offset + size].view(flat.shape[0], *shape)
            offset += size
        return out

    def unflatten(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One peer's row (a width-vector) as a state dict of parameters and float buffers."""
        return {k: v[0] for k, v in self.views(row.reshape(1, -1)).items()}

    def _independent_init(self, seed: int, tensors: Mapping[str, torch.Tensor]) -> None:
        # PyTorch's default Linear/Conv init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
        # and biases alike; drawing it for all rows at once avoids building N modules.
        # Layers without a matrix (normalisation) and buffers keep the module's own values.
        gen = torch.Generator(device="cpu").manual_seed(seed)
        fan_in, layers = {}, set()
        for name, shape in zip(self.names[: self._trained], self.shapes, strict=False):
            if len(shape) > 1:
                fan_in[name.rsplit(".", 1)[0]] = math.prod(shape[1:])
                layers.add(name.rpartition(".")[0])
        columns = []
        for i, (name, size) in enumerate(zip(self.names, self.sizes, strict=True)):
            if i >= self._trained or name.rpartition(".")[0] not in layers:
                columns.append(tensors[name].detach().reshape(1, -1).cpu().expand(self.peers, -1))
                continue
            bound = 1.0 / math.sqrt(fan_in.get(name.rsplit(".", 1)[0], size))
            columns.append((torch.rand(self.peers, size, generator=gen) * 2 - 1) * bound)
        self.flat.copy_(torch.cat(columns, dim=1))

    def _loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
    ) -> torch.Tensor:
        losses = self.loss_fn(functional_call(self.model, (params, buffers), (x,)), y)
        if losses.shape != w.shape:
            raise ValueError(
                f"loss_fn must return one loss per sample, shape {tuple(w.shape)}; got {tuple(losses.shape)}"
            )
        loss: torch.Tensor = (losses * w).sum() / w.sum().clamp_min(1.0)
        return loss

    def step(self, batch: Batch, lr: float, momentum: float, active: torch.Tensor) -> torch.Tensor:
        """One SGD step for every peer with ``active`` true; returns each peer's loss.

        Peers are processed in blocks of at most ``_STEP_FLOATS`` parameters, so gradients
        and activations for 10,000 peers never exist all at once (one block up to ~1,800
        peers of a 9k-parameter MLP, so smaller runs pay nothing for it).
        """
        if momentum and self.momentum is None:
            self.momentum = torch.zeros(self.peers, self.num_params, device=self.device)
        self.model.train()
        block = max(1, _STEP_FLOATS // max(1, self.num_params))
        losses = [
            self._step_block(slice(start, start + block), batch, lr, momentum, active)
            for start in range(0, self.peers, block)
        ]
        return losses[0] if len(losses) == 1 else torch.cat(losses)

    def _step_block(
        self, rows: slice, batch: Batch, lr: float, momentum: float, active: torch.Tensor
    ) -> torch.Tensor:
        x, y, w = (t[rows] for t in batch)
        views = self.params if rows.start == 0 and rows.stop >= self.peers else self.views(self.flat[rows])
        names = self.names
        params = {n: views[n] for n in names[: self._trained]}
        buffers = {n: views[n] for n in names[self._trained :]} | {n: b[rows] for n, b in self.local.items()}
        # Training updates buffers in place, which vmap only carries out on contiguous
        # tensors (a column block of ``flat`` is not): train on copies, then write back.
        updated = {n: b.clone(memory_format=torch.contiguous_format) for n, b in buffers.items()}
        # A peer that is dropped, or has no real sample in this batch, must not move.
        moving = active[rows] & (w.sum(dim=1) > 0)
        everyone = bool(moving.all())
        grads: dict[str, torch.Tensor]
        losses: torch.Tensor
        grads, losses = self._grad(params, updated, x, y, w)
        for name, b in buffers.items():
            new = updated[name]
            b.copy_(new if everyone else torch.where(moving.view(-1, *([1] * (b.dim() - 1))), new, b))
        velocity = {}
        if momentum and self.momentum is not None:
            velocity = self._views(self.momentum[rows], self._trained)
        for name, g in grads.items():
            param = params[name]
            if everyone:  # the common case: fused in-place updates, no temporaries
                if momentum:
                    g = velocity[name].mul_(momentum).add_(g)
                param.sub_(g, alpha=lr)
                continue
            mask = moving.view(-1, *([1] * (g.dim() - 1)))
            if momentum:
                buf = velocity[name]
                buf.copy_(torch.where(mask, buf * momentum + g, buf))
                g = buf
            param.sub_(torch.where(mask, g, 0.0), alpha=lr)
        return losses

    def outputs(self, flat_row: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The module's outputs on ``x`` (eval mode, no gradients) for one row of ``flat``."""
        self.model.eval()
        with torch.no_grad():
            out: torch.Tensor = functional_call(self.model, self.unflatten(flat_row), (x,))
        return out

    def accuracy(self, flat_row: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        """Classification accuracy (argmax of the outputs) of one row of ``flat`` on (x, y)."""
        return float((self.outputs(flat_row, x).argmax(dim=1) == y).float().mean())

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
        """Classification accuracy of every peer's own model on (x, y), in chunks of peers."""
        width = max(p.shape[0] for p in self.model.parameters())
        chunk = max(1, _EVAL_FLOATS // max(1, len(x) * width))
        forward = vmap(lambda p: functional_call(self.model, p, (x,)))
        out = []
        self.model.eval()
        with torch.no_grad():
            for start in range(0, self.peers, chunk):
                logits = forward(self.views(self.flat[start : start + chunk]))
                out.append((logits.argmax(dim=2) == y[None, :]).float().mean(dim=1))
        return torch.cat(out)
