"""What every run of one simulation shares: the data, the model recipe, the loss, the
message size."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from gossipfl.config import TrainConfig
from gossipfl.learning.datasets import Dataset
from gossipfl.learning.models import build_model
from gossipfl.learning.stacked import LossFn, cross_entropy

__all__ = ["Task", "make_task", "message_bytes"]


def message_bytes(model: nn.Module) -> int:
    """Size of one model message on the wire for a peer called p0 at round 0."""
    from gossipfl.transports.wire import encode

    return len(encode(dict(model.state_dict()), sender="p0", round_=0, num_samples=0, degree=0))


@dataclasses.dataclass(frozen=True)
class Task:
    data: Dataset
    train: TrainConfig
    seed: int
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    model_bytes: int
    # A user's model: every peer starts from a copy of it (the built-in one is rebuilt).
    model: nn.Module | None = None
    loss_fn: LossFn = cross_entropy

    def new_model(self) -> nn.Module:
        """The model every peer starts from: same seed, same weights."""
        if self.model is not None:
            return copy.deepcopy(self.model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return build_model(
                self.train.model,
                self.data.num_features,
                self.data.num_classes,
                self.train.hidden,
                self.data.image_shape,
            )


def make_task(
    data: Dataset,
    train: TrainConfig,
    seed: int,
    device: torch.device,
    *,
    model: nn.Module | None = None,
    loss_fn: LossFn | None = None,
) -> Task:
    """The shared parts of a simulation; ``model``/``loss_fn`` replace the built-in ones."""
    def tensor(a: object, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype).to(device)

    label_dtype = torch.int64 if data.y_train.dtype.kind in "iub" else torch.float32
    task = Task(
        data=data,
        train=train,
        seed=seed,
        device=device,
        x_train=tensor(data.x_train, torch.float32),
        y_train=tensor(data.y_train, label_dtype),
        x_test=tensor(data.x_test, torch.float32),
        y_test=tensor(data.y_test, label_dtype),
        model_bytes=0,
        model=model,
        loss_fn=loss_fn or cross_entropy,
    )
    return dataclasses.replace(task, model_bytes=message_bytes(task.new_model()))
