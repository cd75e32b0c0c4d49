"""Temporal / cyclic output discrepancy (arXiv:2107.14153): the selection rule by cycle, which network
is the reference in each cycle, what the plugin asks of the trainer, and a run through the loop."""

import json
from types import SimpleNamespace

import numpy as np
import torch
from conftest import SMOKE, run_al, run_interrupted_and_resumed

from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.cod import CyclicOutputDiscrepancy
from al_bench.strategies.tod import TemporalOutputDiscrepancy
from al_bench.training import TrainContext, TrainSettings

SCORES = torch.tensor([0.30, 0.05, 0.90, 0.20, 0.60])


def ctx_at(cycle, seed=0):
    def predictor(indices, mc_samples=0):
        return {"tod": SCORES[torch.as_tensor(np.asarray(indices))]}

    return SelectionContext(model=None, pool=None, labeled=np.array([], dtype=np.int64),
                            rng=np.random.default_rng(seed), device=torch.device("cpu"), predictor=predictor,
                            cycle=cycle)


def test_cod_takes_the_lowest_discrepancies_in_the_first_cycle_and_the_highest_after():
    cands = np.arange(5)
    assert CyclicOutputDiscrepancy().select(ctx_at(0), cands, 2).tolist() == [1, 3]
    assert CyclicOutputDiscrepancy().select(ctx_at(1), cands, 2).tolist() == [2, 4]
    assert CyclicOutputDiscrepancy(first_cycle="highest").select(ctx_at(0), cands, 2).tolist() == [2, 4]
    assert TemporalOutputDiscrepancy().select(ctx_at(0), cands, 2).tolist() == [2, 4]


def setup_at(plugin, model, cycle, warm_start, consistency_batch=8):
    settings = TrainSettings(batch_size=consistency_batch, precision="fp32")
    ctx = TrainContext(SimpleNamespace(train_x=torch.zeros(1)), np.arange(4), settings, cycle, torch.Generator(), None)
    plugin.setup(model, ctx, warm_start)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_cod_reference_is_a_fresh_network_then_the_previous_cycles_model():
    plugin = CyclicOutputDiscrepancy().train_plugin()
    first = SmallCNN(num_classes=3, in_channels=3, width=4)
    setup_at(plugin, first, 0, warm_start=False)
    assert not same(plugin.previous, first)  # cycle 0: an independently initialised network
    with torch.no_grad():
        first.fc.bias.add_(1.0)  # "training" of cycle 0
    second = SmallCNN(num_classes=3, in_channels=3, width=4)
    setup_at(plugin, second, 1, warm_start=False)
    assert same(plugin.previous, first) and plugin.previous is not first
    assert all(not p.requires_grad for p in plugin.previous.parameters())
    # warm start: the model entering the cycle is the previous cycle's model
    setup_at(plugin, second, 2, warm_start=True)
    assert same(plugin.previous, second) and plugin.previous is not second


def test_the_plugin_asks_for_unlabeled_batches_only_with_the_consistency_loss():
    model = SmallCNN(num_classes=3, in_channels=3, width=4)
    plugin = TemporalOutputDiscrepancy().train_plugin()
    setup_at(plugin, model, 0, warm_start=False, consistency_batch=8)
    assert plugin.unlabeled_batch_size == 8 and set(plugin.modules()) == {"ema", "cons_head"}
    assert set(plugin.optimizers()) == {"cons_head"}
    plugin = TemporalOutputDiscrepancy(consistency=False, unlabeled_batch_size=5).train_plugin()
    setup_at(plugin, model, 0, warm_start=False)
    assert plugin.unlabeled_batch_size == 0 and set(plugin.modules()) == {"ema"} and plugin.optimizers() == {}


def test_cod_runs_warm_started_through_the_loop_and_checkpoints_its_ema(tmp_path):
    metrics = run_al(SMOKE + ["strategy=cod", "trainer.warm_start=true", "budget.cycles=3"], tmp_path)
    assert [m["n_labeled"] for m in metrics] == [50, 100, 150]
    assert all(0.0 <= m["tod_rank_acc"] <= 1.0 and m["plugin_loss"] > 0 for m in metrics)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["plugin"]
    assert set(state) == {"ema", "cons_head", "ema_steps"} and int(state["ema_steps"]) > 0
    derived = json.loads((tmp_path / "run.json").read_text())["derived"]
    assert derived["tod_reference"].startswith("the previous cycle's final model (trained on")


def test_a_warm_started_cod_run_resumed_after_an_interruption_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    args = SMOKE + ["strategy=cod", "trainer.warm_start=true", "budget.cycles=3"]
    whole, resumed = run_interrupted_and_resumed(args, tmp_path, monkeypatch)
    assert resumed == whole
    for c in range(3):
        name = f"labeled/cycle_{c:02d}.npy"
        assert np.array_equal(np.load(tmp_path / "whole" / name), np.load(tmp_path / "resumed" / name))
