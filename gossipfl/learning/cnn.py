"""The built-in CNN: two convolutions and a linear head, for image-like flat features."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SmallCNN"]


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
