"""Combine rules, algorithm weights and outgoing transforms against hand-computed values."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from gossipfl.algorithms import ALGORITHMS, get_algorithm
from gossipfl.outgoing import TRANSFORMS, make_transform
from gossipfl.rules import RULES, make_rule


def test_weighted_mean_is_the_hand_computed_combination() -> None:
    own = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    received = torch.tensor([[[3.0, 0.0], [5.0, 6.0]], [[8.0, 8.0], [0.0, 0.0]]])
    weights = torch.tensor([[0.25, 0.25], [0.5, 0.0]], dtype=torch.float64)  # peer 1: one padded slot
    self_weight = torch.tensor([0.5, 0.5], dtype=torch.float64)
    out = make_rule("mean").combine(own, received, weights, self_weight)
    expected = torch.tensor([[0.5 + 0.75 + 1.25, 1.0 + 0.0 + 1.5], [0.0 + 4.0, 2.0 + 4.0]])
    torch.testing.assert_close(out, expected)


def test_a_peer_with_nothing_received_keeps_its_model() -> None:
    own = torch.tensor([[1.0, -2.0]])
    out = make_rule("mean").combine(
        own, torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    )
    torch.testing.assert_close(out, own)


@pytest.mark.parametrize(
    ("algorithm", "own", "sender", "options", "expected"),
    [
        ("dpsgd", 2, 5, {}, 1 / 6),  # Metropolis–Hastings: 1/(1+max)
        ("dpsgd", 5, 2, {}, 1 / 6),
        ("dpsgd", 3, 3, {"mixing": "uniform"}, 1 / 4),
        ("dpsgd", 2, 5, {"lazy": True}, 1 / 12),
        ("pushsum", 7, 3, {}, 1 / 4),  # the sender's out-degree splits its mass
        ("gossip", 4, 9, {}, 1 / 2),
        ("gossip", 4, 9, {"lazy": True}, 1 / 4),
    ],
)
def test_algorithm_weights(algorithm: str, own: int, sender: int, options: dict, expected: float) -> None:  # type: ignore[type-arg]
    weight = get_algorithm(algorithm).neighbour_weight(np.asarray(own), np.asarray(sender), **options)
    assert float(weight) == pytest.approx(expected)


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="mean"):
        make_rule("medain")
    with pytest.raises(ValueError, match="dpsgd"):
        get_algorithm("sgd")
    with pytest.raises(ValueError, match="identity"):
        make_transform("zip")


def test_registries_list_what_they_build() -> None:
    assert set(RULES) >= {"mean"} and set(TRANSFORMS) >= {"identity"}
    assert set(ALGORITHMS) == {"dpsgd", "pushsum", "gossip"}
    row = torch.randn(3, 4)
    assert make_transform("identity").apply(row, 1) is row


def test_rules_and_algorithms_import_without_torch() -> None:
    code = (
        "import sys, gossipfl.rules, gossipfl.outgoing, gossipfl.algorithms, gossipfl.config; "
        "assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
