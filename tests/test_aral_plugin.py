"""ARAL: the selection rule on planted scores, its loss terms on hand-made values, the authors' layouts,
and the plugin inside al-bench's trainer (the classifier also sees unlabeled and generated images)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_vaal_plugin import MeanVAE as MeanEncoder  # mu = mean pixel: scores known in advance
from test_vaal_plugin import SigmoidDisc as SigmoidSampler
from test_vaal_plugin import ctx_for
from torch import nn

from al_bench.data.synthetic import synthetic
from al_bench.models.aral import ConditionalGenerator, LabelEncoder, Sampler
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.aral import Aral, feature_matching, gan_classifier_loss, gaussian_nll, lr_factor
from al_bench.training import TrainSettings, fit, train_context


@pytest.mark.parametrize("query, want", [("least_labeled", [1, 5, 3]), ("most_labeled", [4, 2, 3])])
def test_selects_what_the_sampler_rates_least_likely_labeled(query, want):
    # S = sigmoid(mean pixel): candidates 1..5 have 10, 120, 60, 250, 30; darker looks less "labeled"
    strategy = Aral(query=query, score_batch_size=2)
    strategy.plugin.enc, strategy.plugin.smp = MeanEncoder(), SigmoidSampler()
    ctx = ctx_for([200, 10, 120, 60, 250, 30], labeled=[0])
    assert strategy.select(ctx, np.arange(1, 6), 3).tolist() == want


def test_classifier_gan_term_is_the_semi_supervised_gan_loss():
    # real: -log D(x_u), fake: -log(1 - D(G(z))), D = Z / (Z + 1), each halved (the authors' weights)
    unl = torch.tensor([[0.0, 0.0]])  # Z = 2
    gen = torch.tensor([[math.log(3.0), -100.0]])  # Z = 3
    want = 0.5 * -math.log(2 / 3) + 0.5 * -math.log(1 - 3 / 4)
    assert gan_classifier_loss(unl, gen).item() == pytest.approx(want, rel=1e-6)
    # the generated-image term pushes D(G(z)) down: its gradient on the fake logits is positive
    gen.requires_grad_(True)
    gan_classifier_loss(unl, gen).backward()
    assert gen.grad[0, 0] > 0


def test_generator_terms_on_known_values():
    mu, log_sigma, z = torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3)
    assert gaussian_nll(mu, log_sigma, z).item() == pytest.approx(1.5)  # sum log sigma + |z - mu|^2 / 2
    assert gaussian_nll(mu, torch.full((2, 3), math.log(2.0)), z).item() == pytest.approx(3 * math.log(2) + 3 / 8)
    assert feature_matching(torch.tensor([[1.0, 2.0], [3.0, 2.0]]), torch.zeros(2, 2)).item() == pytest.approx(2.0)


def test_lr_is_flat_then_linear_to_zero_over_the_last_third():
    assert [lr_factor(e, 30, "linear_last_third") for e in (0, 20, 21, 29)] == pytest.approx([1, 1, 0.9, 0.1])
    assert lr_factor(29, 30, "constant") == 1.0


def test_layouts_are_the_authors_at_32_px_and_follow_the_image_size():
    # cifar_model.py Generator(large=False), Encoder(output_params=True), Sampler: 5,023,878 / 5,749,392 / 840,193
    assert sum(p.numel() for p in ConditionalGenerator(32, 3).parameters()) == 5_023_878
    assert sum(p.numel() for p in LabelEncoder(32, 3).parameters()) == 5_749_392
    assert sum(p.numel() for p in Sampler(100).parameters()) == 840_193
    for size, channels in [(8, 1), (28, 1), (5, 3)]:
        gen, enc = ConditionalGenerator(size, channels, 6, 4, width=4), LabelEncoder(size, channels, 6, width=4)
        x = gen(torch.rand(3, 6), torch.tensor([0, 1, 3]))
        assert x.shape == (3, channels, size, size) and x.abs().max() <= 1
        mu, log_sigma = enc(x, torch.tensor([0.0, 0.5, 0.9]))
        assert mu.shape == log_sigma.shape == (3, 6)


def test_plugin_trains_the_classifier_on_labeled_unlabeled_and_generated_images():
    pool = synthetic(n_train=96, n_test=16, num_classes=3, image_size=8, noise=30.0, seed=0)
    labeled = np.arange(40)  # batches of 16, 16, 8 per epoch
    settings = TrainSettings(epochs=2, batch_size=16, lr=0.05, milestones=[1], progress=False, precision="fp32",
                             crop_padding=1, flip=True)
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, in_channels=pool.in_channels, width=8)
    sizes = []
    model.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    strategy = Aral(width=8, sampler_width=16, noise_size=6, unlabeled_batch_size=12)
    plugin = strategy.plugin
    gen = torch.Generator().manual_seed(0)
    plugin.setup(model, train_context(model, pool, labeled, settings, 0, gen, plugin), warm_start=False)
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in plugin.modules().items()}
    stats = fit(model, pool, labeled, settings, gen, plugin)
    # per classifier step: labeled, unlabeled, generated (its GAN step), unlabeled, generated (feature matching)
    assert sizes == [16, 12, 12, 12, 12, 16, 12, 12, 12, 12, 8, 12, 12, 12, 12] * 2
    assert plugin.unlabeled_batch_size == 0 and len(plugin.unlabeled_rows) == 96  # the whole pool (code)
    for name, module in plugin.modules().items():
        assert any(not torch.equal(p, q) for p, q in zip(module.parameters(), before[name])), name
    for key in ("plugin_loss", "gen_loss", "enc_loss", "smp_loss"):
        assert np.isfinite(stats[key]), key


def test_bad_image_shape_is_refused():
    import dataclasses

    from al_bench import ConfigError

    pool = synthetic(n_train=8, n_test=4, num_classes=2, image_size=8, noise=30.0, seed=0)
    pool = dataclasses.replace(pool, train_x=pool.train_x[:, :, :6])
    strategy = Aral()
    with pytest.raises(ConfigError, match="square"):
        strategy.plugin.setup(None, train_context(None, pool, np.arange(4), TrainSettings(), 0,
                                                  torch.Generator(), strategy.plugin), warm_start=False)


def test_classifier_batch_norm_statistics_stay_those_of_labeled_batches():
    from al_bench.strategies.aral import bn_stats_frozen

    bn = nn.BatchNorm1d(2)
    x = torch.tensor([[0.0, 10.0], [2.0, 30.0]], requires_grad=True)
    with bn_stats_frozen(bn):
        y = bn(x)
    y.pow(3).sum().backward()  # autograd's saved tensors are untouched
    assert torch.equal(bn.running_mean, torch.zeros(2)) and torch.equal(bn.running_var, torch.ones(2))
    assert int(bn.num_batches_tracked) == 0 and bn.momentum == 0.1
    assert y.detach() == pytest.approx(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), abs=1e-4)  # the batch's statistics
    bn(x)
    assert bn.running_mean.tolist() == pytest.approx([0.1, 2.0])


@pytest.mark.parametrize("options", [{"reconstruction": "trained", "encoder_label": "argmax"},
                                     {"classifier_bn": "all", "unlabeled_pool": "unlabeled",
                                      "lr_schedule": "constant"}])
def test_named_options_train(options):
    pool = synthetic(n_train=48, n_test=8, num_classes=3, image_size=8, noise=30.0, seed=0)
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.05, milestones=[1], progress=False, precision="fp32")
    torch.manual_seed(0)
    model = SmallCNN(num_classes=3, in_channels=pool.in_channels, width=8)
    plugin = Aral(width=8, sampler_width=16, noise_size=6, **options).plugin
    gen = torch.Generator().manual_seed(0)
    plugin.setup(model, train_context(model, pool, np.arange(8), settings, 0, gen, plugin), warm_start=False)
    calls = []
    generate = plugin.generate
    plugin.generate = lambda z, y: calls.append(y.dim()) or generate(z, y)
    stats = fit(model, pool, np.arange(8), settings, gen, plugin)
    # G runs on sampled classes (1-d) in steps 1 and 2; with `trained`, also on x_u's logits (2-d) in step 3
    assert calls == ([1, 1, 2] if options.get("reconstruction") == "trained" else [1, 1])
    assert len(plugin.unlabeled_rows) == (48 if "unlabeled_pool" not in options else 40)
    assert all(np.isfinite(stats[k]) for k in ("plugin_loss", "gen_loss", "enc_loss", "smp_loss"))


def test_modules_are_kept_with_warm_start_and_built_anew_without():
    pool = synthetic(n_train=16, n_test=4, num_classes=2, image_size=8, noise=30.0, seed=0)
    plugin = Aral(width=4, sampler_width=8, noise_size=4).plugin
    ctx = train_context(None, pool, np.arange(4), TrainSettings(), 0, torch.Generator(), plugin)
    plugin.setup(None, ctx, warm_start=True)
    first = plugin.modules()
    plugin.setup(None, ctx, warm_start=True)
    assert all(plugin.modules()[k] is m for k, m in first.items())
    plugin.setup(None, ctx, warm_start=False)
    assert all(plugin.modules()[k] is not m for k, m in first.items())
