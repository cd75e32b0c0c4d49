"""TA-VAAL inside al-bench: the selection rule on hand-made scores (the candidates' predicted losses reach
the discriminator, the lowest scores are taken), the ranker loss kinds, and one short run through the loop."""

from __future__ import annotations

import numpy as np
import torch
from conftest import SMOKE, run_al
from torch import nn

from al_bench.models.base import ModelOutput
from al_bench.strategies import ta_vaal as ta_module
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.lloss import ranking_loss
from al_bench.strategies.ta_vaal import TaVaal, rank_bce_loss


class MeanVAE(nn.Module):
    def __init__(self, *a, **k):
        super().__init__()

    def encode(self, x):
        mu = x.mean(dim=(1, 2, 3))[:, None]
        return mu, torch.zeros_like(mu)


class SumDisc(nn.Module):
    """D = sigmoid(mu + r): a bright image or a high predicted loss looks labeled."""

    def __init__(self, *a, **k):
        super().__init__()

    def forward(self, mu, cond=None):
        return torch.sigmoid(mu + cond).squeeze(1)


def test_ta_vaal_selects_the_lowest_rank_conditioned_scores(monkeypatch):
    monkeypatch.setattr(ta_module, "VAE", MeanVAE)
    monkeypatch.setattr(ta_module, "LatentDiscriminator", SumDisc)
    trained = []
    monkeypatch.setattr(ta_module, "train_ta_vaal", lambda *a, **k: trained.append(a[6]) or {})
    pixels = torch.tensor([128, 128, 128, 128, 128, 0, 255], dtype=torch.uint8)  # normalised: 0 or +-2 with std .25
    x = pixels[:, None, None, None].expand(-1, 2, 2, 1).contiguous()
    pred_loss = torch.tensor([0.0, -1.0, 0.5, -3.0, 1.0, 0.3, -2.5])  # per pool row
    pool = type("P", (), {"train_x": x, "mean": (128 / 255,), "std": (0.25,)})()
    ctx = SelectionContext(model=None, pool=pool, labeled=np.array([0]), rng=np.random.default_rng(0),
                           device=torch.device("cpu"),
                           predictor=lambda idx, mc_samples=0: {"pred_loss": pred_loss[idx]})
    strategy = TaVaal(vae_batch_size=2, vae_epochs=4.0)
    # mu + r over candidates 1..6: -1, 0.5, -3, 1, -1.7, -0.5 (+ rounding): lowest 3, then 5, then 1
    assert strategy.select(ctx, np.arange(1, 7), 3).tolist() == [3, 5, 1]
    assert trained == [int((1 + 6) * 4 / 2)]  # iterations: (labeled + candidates) x vae_epochs / vae_batch_size


def test_ranker_loss_kinds():
    gen = torch.Generator().manual_seed(0)
    pred, true = torch.randn(6, generator=gen), torch.rand(6, generator=gen)
    plugin_bce, plugin_margin = TaVaal().plugin, TaVaal(lpl_loss="margin", pairing="halves").plugin
    for plugin in (plugin_bce, plugin_margin):
        plugin.module = type("M", (nn.Module,), {"forward": lambda self, stages: stages[0].mean(dim=(1, 2, 3))})()
        plugin.first_detached = 10
    out = ModelOutput(None, [pred[:, None, None, None]], None)
    step = type("S", (), {"epoch": 0})()
    assert torch.allclose(plugin_bce.loss(out, true, step), rank_bce_loss(pred, true, "mirror"))
    assert torch.allclose(plugin_margin.loss(out, true, step), ranking_loss(pred, true, 1.0, "halves"))
    # by hand: pairs (0, 5), (1, 4), (2, 3); BCE(sigmoid(d), y) = softplus(d) - y d
    i, j = torch.arange(3), torch.arange(5, 2, -1)
    d, y = pred[i] - pred[j], (true[i] > true[j]).float()
    assert torch.allclose(rank_bce_loss(pred, true), (nn.functional.softplus(d) - y * d).mean())


def test_ta_vaal_runs_through_the_loop(tmp_path):
    metrics = run_al(SMOKE + ["strategy=ta_vaal", "strategy.vae_epochs=1.0"], tmp_path)
    assert [m["n_labeled"] for m in metrics] == [50, 100] and "lpl_rank_acc" in metrics[0]
    assert len(np.unique(np.load(tmp_path / "labeled" / "cycle_01.npy"))) == 100
