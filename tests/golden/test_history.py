"""Golden tests: history (a random forest tells labeled from unlabeled by the learning history).

Method: the model's predictions on labeled and unlabeled images are recorded at chosen epochs of
training; a random forest learns labeled vs unlabeled from these histories; the unlabeled images it
is surest are unlabeled (highest out-of-bag P(unlabeled)) are labeled. Context: Yoo & Kweon, "Learning
Loss for Active Learning", CVPR 2019, arXiv:1905.03677 (the follow-up idea).

No public authors' code exists (searched GitHub code and strings for training-history / random-forest
labeled-vs-unlabeled acquisition), so the rule is tested on hand-made inputs whose answer is known:
  - planted pattern: over 4 recorded epochs the 80 labeled images' confidence rises early (0.6, 0.9,
    0.97, 0.99); 60 unlabeled ones follow the same path, 20 planted ones rise late (0.5, 0.55, 0.7,
    0.99) and end at the SAME final confidence. The selection's 20 picks are the planted ones; recording
    only the last epoch (no history) cannot find them (at most half);
  - no signal (labeled and unlabeled rows drawn alike): out-of-bag and cross-fitted P(unlabeled) do not
    tell the sets apart (AUC near 1/2), the in-sample probabilities of the literal reading do (AUC near
    1: memorised), which is why oob is the default;
  - the plugin records at the configured epochs (every=2 of 5 -> 2, 4 and the last, 5; epochs=[1, 3]),
    the labeled rows and a max_unlabeled subsample, the chosen layers, equal to the prediction pass of
    the model at that moment, without changing training;
  - candidates without a record are filled at random only when fewer than k were recorded.
Ablations tried (each fails a test here): lowest instead of highest P(unlabeled) (planted); proba=insample as
default (no-signal); recording only the last epoch (planted, asserted); after_epoch recording every epoch
(moments test).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.history import History, forest_proba
from al_bench.training import TrainSettings, fit, predict, train_context

LABELED, LIKE, PLANTED = 80, 60, 20
EARLY = [0.6, 0.9, 0.97, 0.99]
LATE = [0.5, 0.55, 0.7, 0.99]


def planted_probs():
    """(rows, 4 epochs, 2 classes): rows 0..79 labeled, 80..139 unlabeled like them, 140..159 planted."""
    g = torch.Generator().manual_seed(11)
    path = torch.tensor([EARLY] * (LABELED + LIKE) + [LATE] * PLANTED)
    conf = (path + 0.02 * torch.randn(path.shape, generator=g)).clamp(0.5, 1.0)
    return torch.stack([conf, 1 - conf], 2)


def record(strategy, probs, n_labeled):
    """Run the plugin's setup and after_epoch over 4 epochs with a predictor serving `probs`."""
    n = probs.shape[0]
    plugin = strategy.train_plugin()
    labeled = np.arange(n_labeled)
    unlabeled = np.arange(n_labeled, n)
    epoch = {"now": 0}

    def predict_rows(rows):
        return {"probs": probs[torch.as_tensor(rows), epoch["now"]]}

    ctx = SimpleNamespace(labeled=labeled, unlabeled=unlabeled, settings=SimpleNamespace(epochs=4),
                          predict=predict_rows)
    plugin.setup(SimpleNamespace(stage_channels=(4, 8)), ctx, warm_start=False)
    for e in range(4):
        epoch["now"] = e
        plugin.after_epoch(e, ctx)
    return SelectionContext(model=None, pool=None, labeled=labeled, rng=np.random.default_rng(0),
                            device=torch.device("cpu"), predictor=None)


def test_separates_the_planted_late_learners():
    probs = planted_probs()
    candidates = np.arange(LABELED, LABELED + LIKE + PLANTED)
    planted = list(range(LABELED + LIKE, LABELED + LIKE + PLANTED))
    strategy = History(every=1)
    ctx = record(strategy, probs, LABELED)
    assert strategy.plugin.recorded_epochs == [1, 2, 3, 4]
    assert sorted(strategy.select(ctx, candidates, PLANTED).tolist()) == planted
    # the last epoch alone holds no trace of them
    last_only = History(epochs=[4])
    ctx = record(last_only, probs, LABELED)
    assert len(set(last_only.select(ctx, candidates, PLANTED).tolist()) & set(planted)) <= 10


def auc(scores, positive):
    """P(score of a positive row > score of a negative row), ties one half."""
    pos, neg = scores[positive], scores[~positive]
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def test_out_of_bag_scores_are_not_memorised():
    rng = np.random.default_rng(3)
    features = rng.random((300, 6)).astype(np.float32)
    unlabeled = np.arange(300) >= 100  # same distribution: nothing to learn
    for proba in ("oob", "crossfit"):
        assert 0.38 < auc(forest_proba(features, unlabeled, proba, seed=0), unlabeled) < 0.62, proba
    assert auc(forest_proba(features, unlabeled, "insample", seed=0), unlabeled) > 0.95
    assert History().proba == "oob"


SETTINGS = TrainSettings(epochs=5, batch_size=16, lr=0.05, milestones=[4], progress=False, precision="fp32")


def train(plugin, pool, labeled):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=pool.num_classes, in_channels=pool.in_channels, width=8)
    gen = torch.Generator().manual_seed(0)
    if plugin is not None:
        torch.manual_seed(5)
        plugin.setup(model, train_context(model, pool, labeled, SETTINGS, 0, gen, plugin), warm_start=False)
    torch.manual_seed(1)
    fit(model, pool, labeled, SETTINGS, gen, plugin)
    return model


@pytest.mark.parametrize("options, epochs", [(dict(every=2), [2, 4, 5]), (dict(epochs=[1, 3]), [1, 3])])
def test_records_at_the_configured_epochs(options, epochs):
    pool = synthetic(n_train=96, n_test=8, num_classes=3, image_size=8, noise=30.0, seed=0)
    labeled = np.arange(30)
    strategy = History(**options, layers=["probs", "stage2", "embedding"], max_unlabeled=20)
    model = train(strategy.train_plugin(), pool, labeled)
    plugin = strategy.plugin
    assert plugin.recorded_epochs == epochs
    assert len(plugin.records) == len(epochs)
    assert np.array_equal(plugin.rows[:30], labeled) and len(plugin.rows) == 50
    assert set(plugin.rows[30:]) < set(range(30, 96))
    assert plugin.history().shape == (50, len(epochs) * (3 + 2 + 2))
    if epochs[-1] == 5:  # the last record is the trained model's prediction pass
        x = pool.train_x[torch.as_tensor(plugin.rows)]
        out = predict(model, x, pool.mean, pool.std, 64, plugin, precision="fp32")
        s = out["history_stage2"]
        assert np.allclose(plugin.records[-1], torch.cat([out["probs"], s, torch.stack(
            [out["embedding"].mean(1), out["embedding"].std(1, unbiased=False)], 1)], 1).numpy(), atol=1e-5)
    plain = train(None, pool, labeled)  # recording changes nothing in training
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())


def test_unrecorded_candidates_fill_only_what_the_recorded_cannot():
    probs = planted_probs()
    strategy = History(every=1, max_unlabeled=50)
    ctx = record(strategy, probs, LABELED)
    recorded = set(strategy.plugin.rows[LABELED:].tolist())
    candidates = np.arange(LABELED, LABELED + LIKE + PLANTED)
    assert set(strategy.select(ctx, candidates, 30).tolist()) <= recorded
    picks = strategy.select(ctx, candidates, 70).tolist()
    assert len(set(picks)) == 70 and recorded <= set(picks)
