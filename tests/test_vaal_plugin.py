"""VAAL and its VAE: the selection rule on hand-made scores, the VAE's layouts, and the training
schedule inside al-bench's trainer (the classifier trained as without the plugin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.models.vae import VAE, LatentDiscriminator
from al_bench.strategies import vaal as vaal_module
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.vaal import Vaal, VaalPlugin
from al_bench.training import TrainingPlugin, TrainSettings, fit, train_context


class MeanVAE(nn.Module):
    """mu = the image's mean pixel (normalised), so the scores are known in advance."""

    def encode(self, x):
        mu = x.mean(dim=(1, 2, 3))[:, None]
        return mu, torch.zeros_like(mu)


class SigmoidDisc(nn.Module):
    def forward(self, mu, cond=None):
        return torch.sigmoid(mu).squeeze(1)


def ctx_for(intensities, labeled, seed=0):
    x = torch.tensor(intensities, dtype=torch.uint8)[:, None, None, None].expand(-1, 2, 2, 1).contiguous()
    pool = type("P", (), {"train_x": x, "mean": (0.5,), "std": (0.25,)})()
    return SelectionContext(model=None, pool=pool, labeled=np.asarray(labeled), rng=np.random.default_rng(seed),
                            device=torch.device("cpu"), predictor=None)


@pytest.mark.parametrize("score_bn", ["batch", "running"])
def test_vaal_selects_what_the_discriminator_rates_least_likely_labeled(score_bn):
    # D = sigmoid(mean pixel): darker images look less "labeled"; candidates 1..5 have 10, 120, 60, 250, 30
    strategy = Vaal(score_bn=score_bn, score_batch_size=2)
    strategy.plugin.vae, strategy.plugin.disc = MeanVAE(), SigmoidDisc()
    ctx = ctx_for([200, 10, 120, 60, 250, 30], labeled=[0])
    assert sorted(strategy.select(ctx, np.arange(1, 6), 2).tolist()) == [1, 5]
    assert strategy.select(ctx_for([200, 10, 120, 60, 250, 30], [0], seed=3), np.arange(1, 6), 3).tolist() == [1, 5, 3]


def test_vae_layout_is_the_authors_at_32_px_and_follows_the_image_size():
    big = VAE(32, 3, 32, 128)
    # the authors' model.VAE(32): 4 encoder convolutions to 1024 x 2 x 2, decoder from 1024 x 4 x 4
    assert sum(p.numel() for p in big.parameters()) == 22_835_139
    assert [m.out_channels for m in big.encoder if isinstance(m, nn.Conv2d)] == [128, 256, 512, 1024]
    for size, channels in [(8, 3), (28, 1), (4, 1)]:
        vae = VAE(size, channels, 8, 4)
        x = torch.randn(3, channels, size, size)
        recon, mu, logvar = vae(x)
        assert recon.shape == x.shape and mu.shape == logvar.shape == (3, 8)
    disc = LatentDiscriminator(8)
    assert disc(torch.randn(5, 8)).shape == (5,)


SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=0.05, milestones=[1], progress=False, precision="fp32",
                         crop_padding=1, flip=True)


class UnlabeledOnly(TrainingPlugin):
    unlabeled_batch_size = 16


def train(pool, plugin, labeled):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=pool.num_classes, in_channels=pool.in_channels, width=8)
    gen = torch.Generator().manual_seed(0)
    plugin.setup(model, train_context(model, pool, labeled, SETTINGS, 0, gen, plugin), warm_start=False)
    return model, fit(model, pool, labeled, SETTINGS, gen, plugin)


def test_vaal_plugin_follows_the_solver_schedule_and_leaves_the_classifier_alone(monkeypatch):
    pool = synthetic(n_train=96, n_test=16, num_classes=3, image_size=8, noise=30.0, seed=0)
    labeled = np.arange(40)  # 3 classifier steps per epoch (16, 16, 8)
    calls = []
    vae_step, dsc_step = vaal_module.vae_step, vaal_module.discriminator_step

    def spy_vae(vae, disc, opt, x_l, x_u, *a):
        calls.append(("vae", x_l, x_u))
        return vae_step(vae, disc, opt, x_l, x_u, *a)

    def spy_dsc(vae, disc, opt, x_l, x_u, *a):
        calls.append(("dsc", x_l, x_u))
        return dsc_step(vae, disc, opt, x_l, x_u, *a)

    monkeypatch.setattr(vaal_module, "vae_step", spy_vae)
    monkeypatch.setattr(vaal_module, "discriminator_step", spy_dsc)
    plugin = VaalPlugin(z_dim=8, beta=1.0, adversary_param=1.0, num_vae_steps=2, num_adv_steps=1, lr=5e-4,
                        vae_width=8, discriminator_width=16, unlabeled_batch_size=None, kld="sum")
    before = {k: v.clone() for k, v in plugin.vae.state_dict().items()} if plugin.vae else None
    model, stats = train(pool, plugin, labeled)
    assert before is None and plugin.unlabeled_batch_size == 16
    # per classifier step: VAE, VAE (fresh batches of the same sizes), then the discriminator on the last ones
    assert [c[0] for c in calls] == ["vae", "vae", "dsc"] * 6
    for i in range(0, len(calls), 3):
        first, second, third = calls[i:i + 3]
        assert first[1].shape == second[1].shape and first[2].shape == second[2].shape == (16, 3, 8, 8)
        assert not torch.equal(first[1], second[1]) and third[1] is second[1] and third[2] is second[2]
    assert [c[1].shape[0] for c in calls[::3]] == [16, 16, 8] * 2
    assert np.isfinite(stats["vae_loss"]) and np.isfinite(stats["dsc_loss"])
    # the classifier trains exactly as beside a plugin that only asks for unlabeled batches
    plain, plain_stats = train(pool, UnlabeledOnly(), labeled)
    for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
        assert torch.equal(a, b)
    assert stats["train_loss"] == plain_stats["train_loss"]
