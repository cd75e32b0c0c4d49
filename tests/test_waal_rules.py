"""WAAL (arXiv:1911.09162) on hand-made inputs: the authors' uncertainty terms, the selection rule, the
redundant-trick training set, and one cycle of training through the trainer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.waal import WAAL, loss_bound
from al_bench.training import TrainSettings, fit, predict, train_context


def test_loss_bounds_of_a_flat_prediction():
    log_p = torch.full((1, 4), math.log(0.25), dtype=torch.float64)
    ln4 = math.log(4)
    assert loss_bound(log_p, "l2").item() == pytest.approx(2 * ln4)  # sqrt(4) ln 4
    assert loss_bound(log_p, "l1").item() == pytest.approx(4 * ln4)
    assert loss_bound(log_p, "single_worst").item() == pytest.approx(ln4)
    assert loss_bound(log_p, "l2_l1").item() == pytest.approx(3 * ln4)


def context(probs, critic_scores):
    logits = torch.log(probs)

    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices))
        return {"logits": logits[idx], "probs": probs[idx], "critic": critic_scores[idx]}
    return SelectionContext(model=None, pool=None, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=predictor)


def test_selection_trades_uncertainty_against_the_critic():
    # 0: flat, D = 0.2: score 2 - 3 ln 4 = -2.159; 1: confident, D = 0.2: bound 10.911, score -8.911;
    # 2: the same prediction as 1 with D = 0.9 (unlike the labeled set): score 9 - 10.911 = -1.911
    confident = [0.97, 0.01, 0.01, 0.01]
    probs = torch.tensor([[0.25] * 4, confident, confident], dtype=torch.float64)
    d = torch.tensor([0.2, 0.2, 0.9], dtype=torch.float64)
    bound = 0.5 * math.sqrt(math.log(0.97) ** 2 + 3 * math.log(100) ** 2) + 0.5 * (3 * math.log(100) - math.log(0.97))
    assert WAAL().score({"logits": torch.log(probs), "critic": d}).tolist() == pytest.approx(
        [2 - 3 * math.log(4), 2 - bound, 9 - bound])
    assert WAAL().select(context(probs, d), np.arange(3), 3).tolist() == [2, 0, 1]
    assert WAAL(selection=0.0).select(context(probs, d), np.arange(3), 1).tolist() == [0]  # uncertainty alone


def test_the_redundant_trick_repeats_the_labeled_set_to_the_unlabeled_size():
    pool = SimpleNamespace(train_x=torch.zeros(7, 1), train_y=torch.arange(7) * 10, n_train=7)
    ctx = SimpleNamespace(labeled=np.array([5, 2]), unlabeled=np.array([0, 1, 3, 4, 6]), pool=pool,
                          device=torch.device("cpu"))
    idx, labels = WAAL().plugin.training_set(ctx)
    assert idx.tolist() == [5, 2, 5, 2, 5] and labels.tolist() == [50, 20, 50, 20, 50]
    assert WAAL(redundant=False).plugin.training_set(ctx) is None


def test_one_cycle_trains_the_backbone_and_the_critic():
    pool = synthetic(n_train=96, n_test=16, num_classes=3, image_size=8, noise=30.0, seed=0)
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, in_channels=pool.in_channels, width=8)
    settings = TrainSettings(epochs=1, batch_size=16, lr=0.05, milestones=[], progress=False, precision="fp32")
    labels_before = pool.train_y.clone()
    plugin = WAAL().plugin
    steps = []
    update = plugin.update
    plugin.update = lambda step: steps.append((len(step.x), len(step.unlabeled_x))) or update(step)
    gen = torch.Generator().manual_seed(0)
    labeled = np.arange(32)
    plugin.setup(model, train_context(model, pool, labeled, settings, 0, gen, plugin), warm_start=False)
    assert plugin.gamma_ratio == 32 / 64 and plugin.unlabeled_batch_size == 16
    critic0 = [p.detach().clone() for p in plugin.critic.parameters()]
    stats = fit(model, pool, labeled, settings, gen, plugin)
    assert steps == [(16, 16)] * 4  # max(32, 64) pairs per epoch
    assert all(math.isfinite(stats[k]) for k in ("waal_wd", "waal_gp", "waal_critic_loss"))
    assert all(not torch.equal(a, b) for a, b in zip(critic0, plugin.critic.parameters()))
    assert torch.equal(pool.train_y, labels_before)
    preds = predict(model, pool.train_x[:10], pool.mean, pool.std, 8, plugin, precision="fp32")
    assert preds["critic"].shape == (10,) and bool(((preds["critic"] > 0) & (preds["critic"] < 1)).all())
    assert plugin.critic.training  # back in training mode after the prediction pass
