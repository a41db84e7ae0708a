"""What every run of one simulation shares: the data, the model recipe, the message size."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gossipfl.config import TrainConfig
from gossipfl.datasets import Dataset
from gossipfl.models import build_model

__all__ = ["Task", "make_task", "message_bytes"]


def message_bytes(model: nn.Module) -> int:
    """Exact size of one model message on the wire (safetensors plus our metadata)."""
    from gossipfl.wire import encode

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

    def new_model(self) -> nn.Module:
        """The model every peer starts from: same seed, same weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return build_model(
                self.train.model,
                self.data.num_features,
                self.data.num_classes,
                self.train.hidden,
                self.data.image_shape,
            )


def make_task(data: Dataset, train: TrainConfig, seed: int, device: torch.device) -> Task:
    def tensor(a: object, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype).to(device)

    task = Task(
        data=data,
        train=train,
        seed=seed,
        device=device,
        x_train=tensor(data.x_train, torch.float32),
        y_train=tensor(data.y_train, torch.int64),
        x_test=tensor(data.x_test, torch.float32),
        y_test=tensor(data.y_test, torch.int64),
        model_bytes=0,
    )
    return dataclasses.replace(task, model_bytes=message_bytes(task.new_model()))
