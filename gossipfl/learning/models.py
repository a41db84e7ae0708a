"""The built-in models: logistic regression, an MLP, and a small CNN for image-like data.

Models take flat feature vectors, so one data layout serves all of them; the CNN reshapes
its input to the dataset's ``image_shape``. They hold no buffers (no batch norm), so a
model is exactly its parameters: what gossip averages is the whole model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["build_model"]


class SmallCNN(nn.Module):
    """Two convolutions and a linear head, for (C, L) signals or (C, H, W) images."""

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, channels: int = 16) -> None:
        super().__init__()
        self.image_shape = image_shape
        conv = nn.Conv1d if len(image_shape) == 2 else nn.Conv2d
        self.conv1 = conv(image_shape[0], channels, kernel_size=3, padding=1)
        self.conv2 = conv(channels, channels, kernel_size=3, padding=1, stride=2)
        spatial = [math.ceil(s / 2) for s in image_shape[1:]]
        self.head = nn.Linear(channels * math.prod(spatial), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.image_shape)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        out: torch.Tensor = self.head(x.flatten(1))
        return out


def build_model(
    name: str,
    num_features: int,
    num_classes: int,
    hidden: tuple[int, ...] = (64, 64),
    image_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """A fresh model; initialise it under ``torch.manual_seed`` for reproducible weights."""
    if name == "logreg":
        return nn.Linear(num_features, num_classes)
    if name == "mlp":
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)
    if name == "cnn":
        if image_shape is None or math.prod(image_shape) != num_features:
            raise ValueError("the cnn model needs image-like data (digits or mnist1d)")
        return SmallCNN(image_shape, num_classes)
    raise ValueError(f"unknown model {name!r}; use logreg, mlp or cnn")
