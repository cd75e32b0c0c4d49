"""Golden tests: vae_recon (reconstruction error of a decoder / VAE trained with the classifier).

Method: learning loss's loss-prediction module replaced by a decoder (or VAE) on the backbone's
features, or a VAE on the images; the candidates it reconstructs worst are labeled. Context:
Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019, arXiv:1905.03677 (the follow-up idea).

No public authors' code exists (searched GitHub code and strings for reconstruction-error acquisition on
backbone features and learning-loss follow-ups: only PCA feature-reconstruction error, SCAL's FRE, turned up),
so the rule is tested on hand-made inputs whose answer is known in advance:
  - planted outliers: 8x8 grey images of VERTICAL sinusoidal stripes (random phase) are labeled; the
    candidates are more vertical stripes and 4 HORIZONTAL ones (the transposes: the same pixel values,
    so the same distance to any constant reconstruction). A decoder trained on the labeled images
    reproduces vertical stripes and not horizontal ones: its 4 highest errors are the planted ones;
    the same module left untrained (lr ~ 0) does not find them;
  - the plugin trains the module: its loss at the last epoch is well below the first;
  - the backbone-gradient choice: detach_at=0 leaves the backbone's weights bit-identical to plain
    training, detach_at=1 changes them (the reconstruction gradient reaches the backbone); a VAE on the
    images never touches the backbone.
Ablations tried (each fails a test here): selecting the LOWEST error (planted test); not stepping the
module's optimiser (loss-drop and planted tests); never detaching (detach test).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from al_bench.data.pool import make_pool
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.vae_recon import VaeRecon, kl_per_image
from al_bench.training import TrainSettings, fit, predict, train_context


def stripes(n, horizontal, gen):
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    wave = 128 + 100 * torch.sin(2 * math.pi * torch.arange(8.0) / 8 + phase)  # (n, 1, 8): varies along columns
    img = wave.expand(n, 8, 8) + 6 * torch.randn(n, 8, 8, generator=gen)
    if horizontal:
        img = img.transpose(1, 2)
    return img.clamp(0, 255).round().to(torch.uint8).numpy()


def stripe_pool():
    """Rows 0..63 labeled vertical, 64..123 candidate vertical, 124..127 planted horizontal; 2 classes
    (phase in the first or second half of the period), so the classifier has something to learn."""
    gen = torch.Generator().manual_seed(7)
    x = np.concatenate([stripes(124, False, gen), stripes(4, True, gen)])
    y = (np.arange(128) % 2).astype(np.int64)
    return make_pool("stripes", x, y, x[:8], y[:8])


SETTINGS = TrainSettings(epochs=12, batch_size=16, lr=0.05, milestones=[10], progress=False, precision="fp32",
                         augment=False)


def train(strategy, pool, labeled, settings=SETTINGS, plugin=True):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=2, in_channels=1, width=8)
    gen = torch.Generator().manual_seed(0)
    p = strategy.train_plugin() if plugin else None
    if p is not None:
        p.setup(model, train_context(model, pool, labeled, settings, 0, gen, p), warm_start=False)
    epochs = []
    torch.manual_seed(1)
    fit(model, pool, labeled, settings, gen, p, on_epoch_end=lambda e, v: epochs.append(v))
    return model, p, epochs


def picks(strategy, model, plugin, pool, labeled, candidates, k=4):
    """The strategy's selection through a context whose predictor is the trainer's prediction pass."""
    def predictor(rows, mc_samples=0):
        return predict(model, pool.train_x[torch.as_tensor(rows)], pool.mean, pool.std, 64, plugin,
                       precision="fp32")

    ctx = SelectionContext(model=model, pool=pool, labeled=labeled, rng=np.random.default_rng(0),
                           device=torch.device("cpu"), predictor=predictor)
    return sorted(strategy.select(ctx, candidates, k).tolist())


@pytest.mark.parametrize("options", [dict(input="features", kind="decoder"), dict(input="images", kind="vae")])
def test_picks_the_planted_outliers_the_decoder_cannot_reconstruct(options):
    pool = stripe_pool()
    labeled, candidates = np.arange(64), np.arange(64, 128)
    strategy = VaeRecon(**options, z_dim=4, width=8, lr=1e-2, detach_at=0.0)
    model, plugin, _ = train(strategy, pool, labeled)
    assert picks(strategy, model, plugin, pool, labeled, candidates) == [124, 125, 126, 127]
    # the same module untrained does not single them out: it is the training on the labeled set that does
    untrained = VaeRecon(**options, z_dim=4, width=8, lr=1e-12, detach_at=0.0)
    model, plugin, _ = train(untrained, pool, labeled)
    assert picks(untrained, model, plugin, pool, labeled, candidates) != [124, 125, 126, 127]


@pytest.mark.parametrize("kind", ["decoder", "vae"])
def test_the_plugin_trains_the_module(kind):
    pool = stripe_pool()
    _, _, epochs = train(VaeRecon(kind=kind, z_dim=4, width=8, lr=1e-2), pool, np.arange(64))
    losses = [e["plugin_loss"] for e in epochs]
    assert losses[-1] < 0.5 * losses[0]


def test_the_backbone_gradient_choice_is_honoured():
    pool = stripe_pool()
    labeled = np.arange(64)
    short = TrainSettings(epochs=3, batch_size=16, lr=0.05, milestones=[2], progress=False, precision="fp32",
                          augment=False)
    plain, _, _ = train(VaeRecon(), pool, labeled, short, plugin=False)

    def backbone(**kw):
        model, _, _ = train(VaeRecon(z_dim=4, width=8, **kw), pool, labeled, short)
        return model.state_dict()

    def same(a):
        return all(torch.equal(a[k], v) for k, v in plain.state_dict().items())

    assert same(backbone(detach_at=0.0))  # never reaches the backbone
    assert same(backbone(input="images", kind="vae", detach_at=1.0))  # its own encoder: no link at all
    assert not same(backbone(detach_at=1.0))  # joint throughout
    # detached from epoch 2 of 3 on: the first two epochs differ already
    assert not same(backbone(detach_at=0.67))


def test_nelbo_adds_the_images_kl_and_needs_a_vae():
    from al_bench import ConfigError

    mu, logvar = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, 2) || N(0, 1)) = (2 - 1 - log 2) / 2
    want = torch.tensor([0.5, (1 - math.log(2.0)) / 2])
    assert torch.allclose(kl_per_image(mu, logvar, "sum"), want)
    assert torch.allclose(kl_per_image(mu, logvar, "mean"), want / 2)
    with pytest.raises(ConfigError, match="nelbo"):
        VaeRecon(kind="decoder", score="nelbo")
