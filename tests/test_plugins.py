"""The training-plugin interface, exercised by two toy plugins whose right answers are known:
an EMA teacher whose output discrepancy is a score (TOD-like, arXiv:2107.14153) and a
pseudo-labelling plugin that trains on confident unlabeled images too (CEAL-like, arXiv:1701.03551)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from conftest import SMOKE, load_cfg, read_metrics, run_al

from al_bench.config import Component
from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import ScoreStrategy
from al_bench.training import TrainingPlugin, TrainSettings, fit, predict, train_context


class EmaTeacher(TrainingPlugin):
    """Keeps an exponential moving average of the model's weights and batch-norm statistics (never
    trained by an optimiser);
    the prediction pass adds the squared distance between the student's and teacher's outputs."""

    def __init__(self, decay: float):
        self.decay, self.teacher = decay, None

    def setup(self, model, ctx, warm_start):
        self.teacher = copy.deepcopy(model).requires_grad_(False)

    def modules(self):
        return {"teacher": self.teacher}

    @torch.no_grad()
    def after_step(self, step):
        student = step.model.state_dict()
        for name, t in self.teacher.state_dict().items():
            if t.is_floating_point():
                t.mul_(self.decay).add_(student[name].detach(), alpha=1 - self.decay)
            else:
                t.copy_(student[name])

    def outputs(self, out, x):
        return {"discrepancy": ((out.logits - self.teacher(x).logits.float()) ** 2).sum(1)}


class Discrepancy(ScoreStrategy):
    def __init__(self, decay: float = 0.5):
        self.plugin = EmaTeacher(decay)

    def train_plugin(self):
        return self.plugin

    def score(self, preds):
        return preds["discrepancy"]


class PseudoLabels(TrainingPlugin):
    """Adds the unlabeled images whose predicted class probability is at least `threshold`, with
    that predicted class as their label, to the training set."""

    def __init__(self, threshold: float):
        self.threshold, self.added = threshold, None

    def training_set(self, ctx):
        unlabeled = ctx.unlabeled
        probs = ctx.predict(unlabeled)["probs"]
        conf, label = probs.max(1)
        keep = (conf >= self.threshold).cpu().numpy()
        self.added = unlabeled[keep]
        idx = np.concatenate([ctx.labeled, self.added])
        labels = torch.cat([ctx.pool.train_y[torch.as_tensor(ctx.labeled)], label[torch.as_tensor(keep)]])
        return idx, labels


class SeenIndices(TrainingPlugin):
    """Records what each step trains on, and asks for unlabeled batches."""

    unlabeled_batch_size = 8

    def __init__(self, inner: TrainingPlugin | None = None):
        self.inner, self.seen, self.labels, self.unlabeled = inner, [], [], []

    def training_set(self, ctx):
        return self.inner.training_set(ctx) if self.inner is not None else None

    def after_step(self, step):
        self.seen.append(step.index.clone())
        self.labels.append(step.y.clone())
        self.unlabeled.append((step.unlabeled_index.clone(), step.unlabeled_x.shape))


@pytest.fixture(scope="module")
def pool():
    return synthetic(n_train=96, n_test=32, num_classes=3, image_size=8, noise=30.0, seed=0)


def model_for(pool, seed=0):
    torch.manual_seed(seed)
    return SmallCNN(num_classes=pool.num_classes, in_channels=pool.in_channels, width=8)


SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=0.05, milestones=[1], progress=False, precision="fp32")


def train(pool, plugin, labeled=np.arange(32), seed=0):
    model = model_for(pool, seed)
    gen = torch.Generator().manual_seed(seed)
    plugin.setup(model, train_context(model, pool, labeled, SETTINGS, 0, gen, plugin), warm_start=False)
    stats = fit(model, pool, labeled, SETTINGS, gen, plugin)
    return model, stats


def test_ema_teacher_follows_the_decay_and_scores_through_the_prediction_pass(pool):
    start = model_for(pool)
    # decay 0: the teacher is the student after every step, so the discrepancy is 0 everywhere
    model, _ = train(pool, plugin := EmaTeacher(decay=0.0))
    for t, s in zip(plugin.teacher.parameters(), model.parameters()):
        assert torch.equal(t, s)
    preds = predict(model, pool.train_x[:20], pool.mean, pool.std, 8, plugin, precision="fp32")
    assert preds["discrepancy"].shape == (20,) and torch.all(preds["discrepancy"] == 0)
    # decay 1: the teacher never moves from the initial weights and is never touched by an optimiser
    model, _ = train(pool, plugin := EmaTeacher(decay=1.0))
    for t, s0 in zip(plugin.teacher.parameters(), start.parameters()):
        assert torch.equal(t, s0) and t.grad is None
    assert any(not torch.equal(s0, s) for s0, s in zip(start.parameters(), model.parameters()))
    preds = predict(model, pool.train_x[:20], pool.mean, pool.std, 8, plugin, precision="fp32")
    assert torch.all(preds["discrepancy"] > 0)
    # the teacher is switched to eval mode for the pass and back afterwards
    assert plugin.teacher.training


def test_ema_teacher_half_decay_is_the_average_after_one_step(pool):
    plugin = EmaTeacher(decay=0.5)
    model = model_for(pool)
    one_step = dataclasses.replace(SETTINGS, epochs=1, batch_size=32, milestones=[])
    gen = torch.Generator().manual_seed(0)
    plugin.setup(model, train_context(model, pool, np.arange(32), one_step, 0, gen, plugin), warm_start=False)
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, pool, np.arange(32), one_step, gen, plugin)  # one batch of 32: exactly one step
    for t, b, a in zip(plugin.teacher.parameters(), before, model.parameters()):
        assert torch.allclose(t, (b + a) / 2, atol=1e-7)


def test_a_discrepancy_strategy_runs_through_the_loop_and_its_state_is_checkpointed(tmp_path):
    cfg = load_cfg(SMOKE + ["trainer.warm_start=true", "budget.cycles=3"])
    cfg = dataclasses.replace(cfg, strategy=Component("strategy", "discrepancy", "test_plugins.Discrepancy", {}))
    metrics = run_al(cfg, tmp_path)
    assert [m["n_labeled"] for m in metrics] == [50, 100, 150] and read_metrics(tmp_path) == metrics
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["plugin"]
    assert set(state) == {"teacher"} and set(state["teacher"]) == set(model_state_keys(cfg))


def model_state_keys(cfg):
    return cfg.model.build(num_classes=4, in_channels=3).state_dict().keys()


def test_pseudo_labels_train_on_confident_unlabeled_images_without_touching_the_labels(pool):
    labels_before = pool.train_y.clone()
    # threshold 0: every unlabeled image is added with its predicted class
    spy = SeenIndices(PseudoLabels(threshold=0.0))
    train(pool, spy, labeled=np.arange(32))
    seen = torch.cat(spy.seen[: len(spy.seen) // SETTINGS.epochs])  # the first epoch
    assert sorted(seen.tolist()) == list(range(96))  # labeled 0..31 plus the 64 unlabeled
    assert torch.equal(pool.train_y, labels_before)  # pseudo-labels live in the trainer's copy only
    # threshold above 1: nothing is added, the training set is the labeled one
    spy = SeenIndices(PseudoLabels(threshold=1.01))
    train(pool, spy, labeled=np.arange(32))
    assert sorted(torch.cat(spy.seen[: len(spy.seen) // SETTINGS.epochs]).tolist()) == list(range(32))


def test_pseudo_labels_are_the_predictions_of_the_model_at_the_start_of_training(pool):
    plugin = PseudoLabels(threshold=0.0)
    model = model_for(pool)
    gen = torch.Generator().manual_seed(0)
    ctx = train_context(model, pool, np.arange(32), SETTINGS, 0, gen, plugin)
    idx, labels = plugin.training_set(ctx)
    expected = predict(model, pool.train_x[32:], pool.mean, pool.std, 64, precision="fp32")["probs"].argmax(1)
    assert torch.equal(torch.as_tensor(labels[32:]), expected)
    assert torch.equal(torch.as_tensor(labels[:32]), pool.train_y[:32])


def test_unlabeled_batches_come_from_the_unlabeled_pool_next_to_each_step(pool):
    spy = SeenIndices()
    train(pool, spy, labeled=np.arange(32))
    assert len(spy.unlabeled) == len(spy.seen) == 2 * 2  # 32 labeled / batch 16, 2 epochs
    for index, shape in spy.unlabeled:
        assert shape == (8, 3, 8, 8) and index.min() >= 32  # normalised images of unlabeled rows


def test_a_plugin_that_diverges_stops_the_run(pool):
    class NanLoss(TrainingPlugin):
        def loss(self, out, target_loss, step):
            return out.logits.sum() * float("nan")

    from al_bench.training import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="at epoch 0"):
        train(pool, NanLoss())


def test_pseudo_labelling_never_counts_as_labeled_in_a_run(tmp_path):
    class Pseudo(ScoreStrategy):
        def __init__(self):
            self.plugin = PseudoLabels(threshold=0.0)

        def train_plugin(self):
            return self.plugin

        def score(self, preds):
            return preds["probs"].max(1).values

    import sys

    sys.modules[__name__].Pseudo = Pseudo  # importable by its _target_
    cfg = load_cfg(SMOKE)
    cfg = dataclasses.replace(cfg, strategy=Component("strategy", "pseudo", f"{__name__}.Pseudo", {}))
    metrics = run_al(cfg, tmp_path)
    assert [m["n_labeled"] for m in metrics] == [50, 100]
    assert len(np.load(tmp_path / "labeled" / "cycle_01.npy")) == 100

