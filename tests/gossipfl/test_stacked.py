"""StackedModels with a user's module (BatchNorm buffers) and a user's loss, against plain torch."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gossipfl.config import TrainConfig
from gossipfl.learning.stacked import PeerData, StackedModels
from gossipfl.learning.trainer import TorchTrainer

LR, MOMENTUM, BATCH, ROUNDS, STEPS = 0.1, 0.9, 8, 3, 2


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def toy_data() -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray]]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(60, 4, generator=gen) * 3 + 1
    y = torch.randint(0, 3, (60,), generator=gen)
    parts = [np.arange(0, 20), np.arange(20, 45), np.arange(45, 60)]
    return x, y, parts


def train(models: StackedModels, data: PeerData, momentum: float = MOMENTUM) -> None:
    active = torch.ones(models.peers, dtype=torch.bool)
    for r in range(1, ROUNDS + 1):
        for batch in data.batches(r, STEPS, 0, BATCH):
            models.step(batch, LR, momentum, active)


def plain_torch(model: nn.Module, data: PeerData, loss_fn=None) -> nn.Module:  # type: ignore[no-untyped-def]
    """The reference: an ordinary module trained by torch.optim.SGD on the same batches."""
    module = copy.deepcopy(model).train()
    opt = torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM)
    for r in range(1, ROUNDS + 1):
        for x, y, _ in data.batches(r, STEPS, 0, BATCH):
            opt.zero_grad()
            out = module(x[0])
            loss = F.cross_entropy(out, y[0]) if loss_fn is None else loss_fn(out, y[0]).mean()
            loss.backward()
            opt.step()
    return module


def one_peer(x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray], i: int) -> PeerData:
    return PeerData([parts[i]], x, y, torch.device("cpu"), seed=5, peer_ids=[i])


def test_batchnorm_rows_equal_single_peer_and_plain_torch_training() -> None:
    x, y, parts = toy_data()
    model = bn_model()
    stacked = StackedModels(copy.deepcopy(model), 3)
    train(stacked, PeerData(parts, x, y, torch.device("cpu"), seed=5))
    parameters = ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert stacked.names == [*parameters, "1.running_mean", "1.running_var"]
    assert stacked.num_params == sum(p.numel() for p in model.parameters())
    assert stacked.width == stacked.num_params + 16
    assert stacked.momentum is not None and stacked.momentum.shape == (3, stacked.num_params)
    for i in range(3):
        alone = StackedModels(copy.deepcopy(model), 1)
        train(alone, one_peer(x, y, parts, i))
        torch.testing.assert_close(stacked.flat[i], alone.flat[0], atol=1e-6, rtol=0)
        reference = plain_torch(model, one_peer(x, y, parts, i))
        expected = {k: v for k, v in reference.state_dict().items() if k != "1.num_batches_tracked"}
        got = stacked.unflatten(stacked.flat[i])
        assert list(got) == stacked.names
        for name in stacked.names:
            torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5)
        steps = int(reference.state_dict()["1.num_batches_tracked"])
        assert steps == ROUNDS * STEPS
        assert int(stacked.local["1.num_batches_tracked"][i]) == steps
    running_means = stacked.views(stacked.flat)["1.running_mean"]
    assert not torch.allclose(running_means[0], running_means[1])  # each peer has its own stats


def test_mixing_flat_mixes_running_stats_and_evaluation_uses_them() -> None:
    x, y, parts = toy_data()
    model = bn_model()
    stacked = StackedModels(copy.deepcopy(model), 3)
    train(stacked, PeerData(parts, x, y, torch.device("cpu"), seed=5))
    references = [plain_torch(model, one_peer(x, y, parts, i)) for i in range(3)]
    w = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    stacked.replace(w @ stacked.flat)
    states = [r.state_dict() for r in references]
    for i in range(3):
        mixed = copy.deepcopy(model)
        mixed.load_state_dict(
            {k: sum(w[i, j] * states[j][k].float() for j in range(3)) for k in states[0]}, strict=True
        )
        mixed.eval()
        views = stacked.views(stacked.flat)
        for name in ("1.running_mean", "1.running_var"):
            torch.testing.assert_close(views[name][i], mixed.state_dict()[name], atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            expected = mixed(x)
        torch.testing.assert_close(stacked.outputs(stacked.flat[i], x), expected, atol=1e-4, rtol=1e-4)
        accuracy = float((expected.argmax(dim=1) == y).float().mean())
        assert stacked.accuracy(stacked.flat[i], x, y) == pytest.approx(accuracy)
        assert float(stacked.peer_accuracies(x, y)[i]) == pytest.approx(accuracy)
    assert stacked.model.training is False  # evaluation ran in eval mode


def test_a_peer_that_does_not_move_keeps_its_buffers() -> None:
    x, y, parts = toy_data()
    stacked = StackedModels(bn_model(), 3)
    data = PeerData(parts, x, y, torch.device("cpu"), seed=5)
    before = stacked.flat.clone()
    stacked.step(data.sample(BATCH, 0), LR, 0.0, torch.tensor([True, False, True]))
    torch.testing.assert_close(stacked.flat[1], before[1], atol=0, rtol=0)
    assert stacked.local["1.num_batches_tracked"].tolist() == [1, 0, 1]
    assert not torch.equal(stacked.flat[0], before[0])


def test_custom_losses_equal_hand_computation() -> None:
    x, y, parts = toy_data()
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    class_weight = torch.tensor([1.0, 2.0, 0.5])

    def mse_one_hot(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - torch.eye(3)[target]) ** 2).sum(dim=1)

    def weighted_ce(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target, weight=class_weight, reduction="none")

    data = one_peer(x, y, parts, 1)
    bx, by, bw = data.sample(BATCH, 7)
    for loss_fn in (mse_one_hot, weighted_ce):
        stacked = StackedModels(copy.deepcopy(model), 1, loss_fn=loss_fn)
        loss = stacked.step((bx, by, bw), LR, 0.0, torch.ones(1, dtype=torch.bool))
        # By hand: the per-sample losses written out, averaged, differentiated by autograd.
        hand = copy.deepcopy(model)
        out = hand(bx[0])
        if loss_fn is mse_one_hot:
            target = torch.zeros(BATCH, 3)
            target[torch.arange(BATCH), by[0]] = 1.0
            per_sample = ((out - target) ** 2).sum(dim=1)
        else:
            per_sample = -class_weight[by[0]] * out.log_softmax(dim=1)[torch.arange(BATCH), by[0]]
        mean = per_sample.mean()
        grads = torch.autograd.grad(mean, list(hand.parameters()))
        assert float(loss[0]) == pytest.approx(float(mean.detach()), abs=1e-6)
        got = stacked.unflatten(stacked.flat[0])
        for (name, p), g in zip(hand.named_parameters(), grads, strict=True):
            torch.testing.assert_close(got[name], p.detach() - LR * g, atol=1e-6, rtol=1e-6)


def test_integer_buffers_are_local_and_bad_inputs_are_refused() -> None:
    stacked = StackedModels(bn_model(), 2)
    assert "1.num_batches_tracked" not in stacked.names
    assert set(stacked.local) == {"1.num_batches_tracked"}
    assert "1.num_batches_tracked" not in stacked.unflatten(stacked.flat[0])

    def mean_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target)

    x, y, parts = toy_data()
    batch = PeerData(parts[:2], x, y, torch.device("cpu")).sample(BATCH, 0)
    scalar = StackedModels(bn_model(), 2, loss_fn=mean_loss)
    with pytest.raises(ValueError, match="one loss per sample"):
        scalar.step(batch, LR, 0.0, torch.ones(2, dtype=torch.bool))
    frozen = bn_model()
    frozen[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"frozen: 0\.weight"):
        StackedModels(frozen, 2)


def test_independent_init_draws_layers_and_keeps_norm_and_buffers() -> None:
    stacked = StackedModels(bn_model(), 4, init="independent", seed=2)
    views = stacked.views(stacked.flat)
    assert not torch.equal(views["0.weight"][0], views["0.weight"][1])
    for name, value in (("1.weight", 1.0), ("1.bias", 0.0), ("1.running_mean", 0.0), ("1.running_var", 1.0)):
        assert torch.equal(views[name], torch.full_like(views[name], value))


def test_epoch_padding_repeats_only_the_peers_own_samples() -> None:
    x, y, parts = toy_data()
    data = PeerData(parts, x, y, torch.device("cpu"))
    for i, part in enumerate(parts):
        assert set(data.index[i].tolist()) == set(part.tolist())
    seen = [0, 0, 0]
    for bx, _, valid in data.epoch(BATCH, 0):
        for i in range(3):
            real = bx[i][valid[i] > 0]
            seen[i] += len(real)
            assert all(any(torch.equal(r, x[j]) for j in parts[i]) for r in bx[i])
    assert seen == [len(p) for p in parts]


def test_torch_trainer_runs_a_user_module_and_loss_like_plain_torch() -> None:
    x, y, parts = toy_data()
    model = bn_model()

    def mse_one_hot(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - torch.eye(3)[target]) ** 2).sum(dim=1)

    config = TrainConfig(lr=LR, momentum=MOMENTUM, local_steps=STEPS, batch_size=BATCH)
    trainer = TorchTrainer(copy.deepcopy(model), one_peer(x, y, parts, 2), x, y, config, loss_fn=mse_one_hot)
    for r in range(1, ROUNDS + 1):
        trainer.fit(r)
    reference = plain_torch(model, one_peer(x, y, parts, 2), mse_one_hot)
    weights = trainer.get_weights()
    expected = reference.state_dict()
    assert set(weights) == set(expected) - {"1.num_batches_tracked"}
    for name, value in weights.items():
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=1e-5)
    reference.eval()
    with torch.no_grad():
        out = reference(x)
    loss, accuracy = trainer.evaluate()
    assert loss == pytest.approx(float(mse_one_hot(out, y).mean()), abs=1e-5)
    assert accuracy == pytest.approx(float((out.argmax(dim=1) == y).float().mean()))
    state = trainer.optimizer_state()
    assert int(state["local.1.num_batches_tracked"]) == ROUNDS * STEPS
    fresh = TorchTrainer(copy.deepcopy(model), one_peer(x, y, parts, 2), x, y, config, loss_fn=mse_one_hot)
    fresh.set_weights(weights)
    fresh.load_optimizer_state(state)
    assert fresh.evaluate() == (loss, accuracy)
    assert int(fresh.models.local["1.num_batches_tracked"][0]) == ROUNDS * STEPS
    torch.testing.assert_close(fresh.models.momentum, trainer.models.momentum, atol=0, rtol=0)


def test_dropout_draws_differ_between_peers_and_evaluation_is_deterministic() -> None:
    torch.manual_seed(0)
    stacked = StackedModels(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)), 2)
    x, y, _ = toy_data()
    same = (x[:16].expand(2, -1, -1), y[:16].expand(2, -1), torch.ones(2, 16))
    losses = stacked.step(same, LR, 0.0, torch.ones(2, dtype=torch.bool))
    assert float(losses[0]) != float(losses[1])  # same batch, same weights, other dropout masks
    assert stacked.accuracy(stacked.flat[0], x, y) == stacked.accuracy(stacked.flat[0], x, y)
