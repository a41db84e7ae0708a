"""Local training behind a small protocol, so users plug in their own model and loop.

A ``Trainer`` owns a model and its peer's local data. The peer keeps the authoritative
weights itself and hands them to the trainer only around ``fit``, so gossip can average
weights while a training step runs in its thread.

``TorchTrainer`` is the built-in one: any ``torch.nn.Module`` (the built-in models or a
user's, BatchNorm included) with any per-sample loss; it is the simulator's vectorized
trainer with a single peer, so a real peer computes exactly the local steps the simulator
computes for it, and its weights (parameters and float buffers, see ``gossipfl.learning.stacked``)
are what it gossips. ``NumPyClientTrainer`` adapts an object written for
Flower's ``NumPyClient`` (get_parameters / fit / evaluate) without importing Flower.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from gossipfl.config import DataConfig, TrainConfig
from gossipfl.learning.stacked import LossFn, PeerData, StackedModels, cross_entropy

__all__ = ["NumPyClientTrainer", "TorchTrainer", "Trainer", "build_trainer"]

_LOCAL = "local."  # optimizer-state key prefix of a peer's local (integer) buffers


class Trainer(Protocol):
    num_samples: int

    def get_weights(self) -> dict[str, torch.Tensor]: ...

    def set_weights(self, weights: Mapping[str, torch.Tensor]) -> None: ...

    def fit(self, round_: int) -> float:
        """Train one round on local data; return the mean training loss (NaN if unknown)."""
        ...

    def evaluate(self) -> tuple[float, float]:
        """(loss, accuracy) of the current weights on this peer's test data."""
        ...

    def optimizer_state(self) -> dict[str, torch.Tensor]: ...

    def load_optimizer_state(self, state: Mapping[str, torch.Tensor]) -> None: ...


class TorchTrainer:
    """Local SGD (with optional momentum) of one model on one peer's samples.

    ``loss_fn(outputs, targets)`` returns one loss per sample (default cross-entropy); it is
    trained on and reported as the test loss. The test accuracy is argmax accuracy.
    Integer buffers (BatchNorm's ``num_batches_tracked``) are local: they are not in the
    weights but travel in the optimizer state, so a checkpoint restores them.
    """

    def __init__(
        self,
        model: nn.Module,
        data: PeerData,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        train: TrainConfig,
        *,
        loss_fn: LossFn = cross_entropy,
    ) -> None:
        self.models = StackedModels(model, 1, loss_fn=loss_fn)
        self.data = data
        self.x_test, self.y_test = x_test, y_test
        self.train = train
        self.num_samples = int(data.lengths[0])
        self._active = torch.ones(1, dtype=torch.bool)

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.models.unflatten(self.models.flat[0]).items()}

    def set_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        self.models.flat[0].copy_(self.models.flatten(weights))

    def fit(self, round_: int) -> float:
        t = self.train
        losses = [
            float(self.models.step(batch, t.lr, t.momentum, self._active)[0])
            for batch in self.data.batches(round_, t.local_steps, t.local_epochs, t.batch_size)
        ]
        return float(np.mean(losses)) if losses else math.nan

    def evaluate(self) -> tuple[float, float]:
        outputs = self.models.outputs(self.models.flat[0], self.x_test)
        with torch.no_grad():
            loss = float(self.models.loss_fn(outputs, self.y_test).mean())
        accuracy = float((outputs.argmax(dim=1) == self.y_test).float().mean())
        return loss, accuracy

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        state = {_LOCAL + name: b.clone() for name, b in self.models.local.items()}
        if self.models.momentum is not None:
            state["momentum"] = self.models.momentum.clone()
        return state

    def load_optimizer_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Raises ``ValueError`` (changing nothing) for state this trainer cannot use."""
        local = {_LOCAL + name: b for name, b in self.models.local.items()}
        unknown = sorted(set(state) - {"momentum"} - set(local))
        if unknown:
            raise ValueError(f"unknown optimizer tensors {unknown[:5]}")
        for key, buffer in local.items():
            if key in state and (state[key].shape != buffer.shape or state[key].dtype != buffer.dtype):
                raise ValueError(
                    f"{key} is {state[key].dtype} {tuple(state[key].shape)}, "
                    f"expected {buffer.dtype} {tuple(buffer.shape)}"
                )
        momentum = state.get("momentum")
        if momentum is not None:
            expected = (self.models.peers, self.models.num_params)
            if tuple(momentum.shape) != expected or momentum.dtype != self.models.flat.dtype:
                raise ValueError(
                    f"momentum is {momentum.dtype} {tuple(momentum.shape)}, "
                    f"expected {self.models.flat.dtype} {expected}"
                )
            if not bool(torch.isfinite(momentum).all()):
                raise ValueError("momentum holds NaN or infinity")
            self.models.momentum = momentum.clone()
        for key, buffer in local.items():
            if key in state:
                buffer.copy_(state[key])


class NumPyClientTrainer:
    """Runs an object with Flower's ``NumPyClient`` methods as a gossip trainer.

    Weights travel as tensors named ``param_0 .. param_{k-1}`` in ``get_parameters`` order.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._weights = self._named(client.get_parameters({}))
        self.num_samples = 0

    @staticmethod
    def _named(arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return {f"param_{i}": torch.from_numpy(np.array(a, copy=True)) for i, a in enumerate(arrays)}

    def _arrays(self) -> list[np.ndarray]:
        return [self._weights[f"param_{i}"].numpy() for i in range(len(self._weights))]

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self._weights.items()}

    def set_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        self._weights = {k: v.detach().clone() for k, v in weights.items()}

    def fit(self, round_: int) -> float:
        arrays, num_examples, metrics = self.client.fit(self._arrays(), {"round": round_})
        self._weights = self._named(arrays)
        self.num_samples = int(num_examples)
        return float(metrics.get("loss", math.nan)) if metrics else math.nan

    def evaluate(self) -> tuple[float, float]:
        loss, _, metrics = self.client.evaluate(self._arrays(), {})
        return float(loss), float((metrics or {}).get("accuracy", math.nan))

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_optimizer_state(self, state: Mapping[str, torch.Tensor]) -> None:
        return None


def build_trainer(peer_id: str, data: DataConfig, train: TrainConfig) -> TorchTrainer:
    """The built-in trainer for a peer config: load the dataset, keep this peer's part."""
    from gossipfl.learning.datasets import load_dataset
    from gossipfl.learning.models import build_model
    from gossipfl.learning.partition import hospital_groups, partition

    dataset = load_dataset(data.dataset, data.seed, data.test_fraction, data.label)
    groups = hospital_groups(data.parts, data.hospitals) if data.partition == "by-hospital" else None
    parts = partition(dataset.y_train, data.parts, data.partition, data.seed, data.alpha, groups)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        model = build_model(
            train.model, dataset.num_features, dataset.num_classes, train.hidden, dataset.image_shape
        )
    x, y = torch.from_numpy(dataset.x_train), torch.from_numpy(dataset.y_train)
    local = PeerData([parts[data.part]], x, y, torch.device("cpu"), seed=data.seed, peer_ids=[data.part])
    return TorchTrainer(
        model, local, torch.from_numpy(dataset.x_test), torch.from_numpy(dataset.y_test), train
    )
