"""Deep-ensemble strategies (Beluch et al., CVPR 2018) on the training plugin: the members train beside
the model without changing its training, they differ, the prediction pass carries their probabilities,
evaluation follows `evaluate`, and a run goes through the loop with its members checkpointed."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import SMOKE, run_al, run_interrupted_and_resumed

from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.bald import bald
from al_bench.strategies.ensemble_bald import EnsembleBald
from al_bench.strategies.ensemble_entropy import EnsembleEntropy
from al_bench.training import TrainSettings, evaluate, fit, predict, train_context

SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=0.05, milestones=[1], progress=False, precision="fp32")


@pytest.fixture(scope="module")
def pool():
    return synthetic(n_train=96, n_test=32, num_classes=3, image_size=8, noise=30.0, seed=0)


def model_for(pool):
    torch.manual_seed(0)
    return SmallCNN(num_classes=pool.num_classes, in_channels=pool.in_channels, width=8)


def train(pool, plugin, same_init=False):
    model = model_for(pool)
    gen = torch.Generator().manual_seed(0)
    if plugin is not None:
        torch.manual_seed(1)
        plugin.setup(model, train_context(model, pool, np.arange(32), SETTINGS, 0, gen, plugin), warm_start=False)
        if same_init:
            for net in plugin.nets:
                net.load_state_dict(model.state_dict())
    fit(model, pool, np.arange(32), SETTINGS, gen, plugin)
    return model


def test_members_train_beside_an_unchanged_model_and_disagree(pool):
    plain = train(pool, None)
    plugin = EnsembleBald(members=3).train_plugin()
    model = train(pool, plugin)
    for a, b in zip(plain.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)  # member 0 trains exactly as a plain run
    start = copy.deepcopy(plugin.nets[0])
    assert len(plugin.nets) == 2 and set(plugin.optimizers()) == {"member1", "member2"}
    preds = predict(model, pool.train_x[32:], pool.mean, pool.std, 64, plugin, precision="fp32")
    mp = preds["member_probs"]
    assert mp.shape == (64, 3, 3)
    plain_probs = predict(model, pool.train_x[32:], pool.mean, pool.std, 64, precision="fp32")["probs"]
    assert torch.allclose(mp[:, 0], plain_probs, atol=1e-6)
    assert bald(mp).min() >= -1e-12 and bald(mp).mean() > 1e-5  # the members disagree
    assert not all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), model.state_dict().values()))


def test_identical_members_on_shared_batches_stay_identical_and_never_disagree(pool):
    # the ablation of the ensemble's key term, diversity: same initialisation and same batches
    plugin = EnsembleBald(members=3, batches="shared").train_plugin()
    model = train(pool, plugin, same_init=True)
    mp = predict(model, pool.train_x[32:], pool.mean, pool.std, 64, plugin, precision="fp32")["member_probs"]
    assert torch.allclose(mp[:, 1], mp[:, 0], atol=1e-6) and bald(mp).abs().max() < 1e-9
    # their own seeded batches make even identically initialised members differ
    plugin = EnsembleBald(members=3, batches="independent").train_plugin()
    model = train(pool, plugin, same_init=True)
    mp = predict(model, pool.train_x[32:], pool.mean, pool.std, 64, plugin, precision="fp32")["member_probs"]
    assert bald(mp).mean() > 1e-5


@pytest.mark.parametrize("how", ["ensemble", "member"])
def test_evaluation_is_the_ensembles_or_the_models(pool, how):
    plugin = EnsembleEntropy(members=3, evaluate=how).train_plugin()
    model = train(pool, plugin)
    preds = predict(model, pool.test_x, pool.mean, pool.std, 64, plugin, precision="fp32")
    mp, y = preds["member_probs"], pool.test_y
    mean = mp.mean(1)
    extra = plugin.metrics(preds, y)
    got = evaluate(preds, y)
    if how == "ensemble":
        assert got["test_acc"] == extra["ensemble_test_acc"]
        assert got["test_loss"] == pytest.approx(float(-torch.log(mean[torch.arange(len(y)), y]).mean()), rel=1e-5)
        assert torch.allclose(preds["probs"], mean, atol=1e-6)
    else:
        assert got["test_acc"] == extra["member_test_acc"]
        assert torch.allclose(preds["probs"], mp[:, 0], atol=1e-6)


def test_an_ensemble_runs_warm_started_through_the_loop_with_its_members_checkpointed(tmp_path):
    metrics = run_al(SMOKE + ["strategy=ensemble_bald", "strategy.members=3", "trainer.warm_start=true",
                              "budget.cycles=3"], tmp_path)
    assert [m["n_labeled"] for m in metrics] == [50, 100, 150]
    assert all(m["test_acc"] == m["ensemble_test_acc"] and m["member_loss"] > 0 for m in metrics)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["plugin"]
    assert set(state) == {"member1", "member2"}
    derived = json.loads((tmp_path / "run.json").read_text())["derived"]
    assert derived["ensemble_members"] == 3
    assert derived["ensemble_evaluate"] == "test_acc/test_loss are the ensemble's averaged prediction"


def test_a_warm_started_ensemble_resumed_after_an_interruption_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    args = SMOKE + ["strategy=ensemble_bald", "strategy.members=2", "trainer.warm_start=true", "budget.cycles=3"]
    whole, resumed = run_interrupted_and_resumed(args, tmp_path, monkeypatch)
    assert resumed == whole
    assert np.array_equal(np.load(tmp_path / "whole" / "labeled" / "cycle_02.npy"),
                          np.load(tmp_path / "resumed" / "labeled" / "cycle_02.npy"))
