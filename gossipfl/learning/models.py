"""The built-in models: logistic regression, an MLP, and a small CNN for image-like data.

Models take flat feature vectors, so one data layout serves all of them; the CNN reshapes
its input to the dataset's ``image_shape``. They hold no buffers (no batch norm), so a
model is exactly its parameters: what gossip averages is the whole model.

``MODELS`` is the registry config validation and the CLI read, so this module imports
torch only inside the builders: naming a model must not cost torch's start-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "build_model"]

# (num_features, num_classes, hidden widths, image shape or None) -> a fresh model.
ModelBuilder = Callable[[int, int, tuple[int, ...], "tuple[int, ...] | None"], "nn.Module"]


def _logreg(num_features: int, num_classes: int, hidden: tuple[int, ...], image_shape: object) -> nn.Module:
    from torch import nn

    return nn.Linear(num_features, num_classes)


def _mlp(num_features: int, num_classes: int, hidden: tuple[int, ...], image_shape: object) -> nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    width = num_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _cnn(
    num_features: int, num_classes: int, hidden: tuple[int, ...], image_shape: tuple[int, ...] | None
) -> nn.Module:
    if image_shape is None or math.prod(image_shape) != num_features:
        raise ValueError("the cnn model needs image-like data (digits or mnist1d)")
    from gossipfl.learning.cnn import SmallCNN

    return SmallCNN(image_shape, num_classes)


# The built-in models by name. Adding one is one builder and one entry.
MODELS: dict[str, ModelBuilder] = {"logreg": _logreg, "mlp": _mlp, "cnn": _cnn}


def build_model(
    name: str,
    num_features: int,
    num_classes: int,
    hidden: tuple[int, ...] = (64, 64),
    image_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """A fresh model; initialise it under ``torch.manual_seed`` for reproducible weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    return MODELS[name](num_features, num_classes, hidden, image_shape)
