"""The DCGAN shared by gaal and asal (al_bench.models.gan) and its training plugin."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.models.gan import Discriminator, Generator, to_gan_space
from al_bench.models.resnet import ResNet18
from al_bench.strategies.asal import Asal
from al_bench.strategies.common.gan_query import Classifier, GanPlugin, margin_sq, neg_entropy, synthesize


def test_dcgan_layout_at_32_pixels():
    gen, disc = Generator(32, 3), Discriminator(32, 3)
    convs = [m for m in gen.net if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(100, 256), (256, 128), (128, 64), (64, 3)]
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(3, 64), (64, 128), (128, 256), (256, 1)]
    x = gen(torch.randn(2, 100))
    assert x.shape == (2, 3, 32, 32) and x.abs().max() <= 1
    assert disc(x).shape == (2,) and disc.features(x).shape == (2, 4096) == (2, disc.feature_dim)


@pytest.mark.parametrize("size,channels", [(28, 1), (8, 3), (16, 1)])
def test_other_sizes_follow_the_rule(size, channels):
    gen, disc = Generator(size, channels, z_dim=7, width=4), Discriminator(size, channels, width=4)
    x = gen(torch.randn(3, 7))
    assert x.shape == (3, channels, size, size)
    assert disc(x).shape == (3,) and disc.features(x).shape == (3, disc.feature_dim)


def test_pool_images_map_to_the_generators_range():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 2): one pixel, two channels
    assert to_gan_space(x).flatten().tolist() == [-1.0, 1.0]


def ctx_for(images):
    pool = SimpleNamespace(train_x=images, n_train=images.shape[0])
    return SimpleNamespace(pool=pool, device=torch.device("cpu"))


def test_the_plugin_trains_the_gan_once_on_every_pool_image():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 8, 8, 1), dtype=torch.uint8, generator=g)
    plugin = GanPlugin(z_dim=4, width=4, epochs=2.0, batch_size=16, lr=2e-4, beta1=0.5)
    assert plugin.steps(40) == 5
    torch.manual_seed(1)
    plugin.setup(None, ctx_for(images), warm_start=False)
    assert not plugin.trained
    plugin.ensure_trained()  # the first training step does this
    gen = plugin.gen
    first = {k: v.clone() for k, v in plugin.state_dict()["gan_generator"].items()}
    assert plugin.metrics(None, None)["gan_train_time_s"] > 0
    plugin.setup(None, ctx_for(images), warm_start=False)  # the next cycle keeps it
    plugin.ensure_trained()
    assert plugin.gen is gen and plugin.metrics(None, None)["gan_train_time_s"] == 0.0
    # the same seed gives the same GAN (the loop seeds the global generator before setup)
    again = GanPlugin(z_dim=4, width=4, epochs=2.0, batch_size=16, lr=2e-4, beta1=0.5)
    torch.manual_seed(1)
    again.setup(None, ctx_for(images), warm_start=False)
    again.ensure_trained()
    assert all(torch.equal(first[k], v) for k, v in again.state_dict()["gan_generator"].items())
    # a warm-start resume loads the trained GAN after setup and trains none
    resumed = GanPlugin(z_dim=4, width=4, epochs=2.0, batch_size=16, lr=2e-4, beta1=0.5)
    resumed.setup(None, ctx_for(images), warm_start=True)
    resumed.load_state_dict(plugin.state_dict())
    resumed.ensure_trained()
    assert resumed.metrics(None, None)["gan_train_time_s"] == 0.0
    assert all(torch.equal(first[k], v) for k, v in resumed.state_dict()["gan_generator"].items())
    fresh = Generator(8, 1, 4, 4)
    assert not all(torch.equal(first[k], v) for k, v in fresh.state_dict().items() if "running" not in k)


def test_non_square_images_and_an_untrained_gan_are_refused():
    plugin = GanPlugin(z_dim=4, width=4, epochs=1.0, batch_size=16, lr=2e-4, beta1=0.5)
    with pytest.raises(ConfigError, match="square"):
        plugin.setup(None, ctx_for(torch.zeros(4, 8, 6, 1, dtype=torch.uint8)), warm_start=False)
    with pytest.raises(RuntimeError, match="no trained GAN"):
        Asal().select(SimpleNamespace(), np.arange(3), 1)


def test_config_refuses_an_unknown_feature_space():
    from conftest import SMOKE, load_cfg

    with pytest.raises(ConfigError, match="features"):
        load_cfg(SMOKE + ["strategy=asal", "strategy.features=autoencoder"])


def test_discriminator_features_are_computed_once_per_pool_image_and_match_a_fresh_pass():
    from al_bench.data.pool import Pool
    from al_bench.models.small_cnn import SmallCNN
    from al_bench.strategies.base import SelectionContext

    torch.manual_seed(0)
    x = torch.randint(0, 256, (30, 8, 8, 1), dtype=torch.uint8)
    pool = Pool("p", x, torch.zeros(30, dtype=torch.long), x[:2], torch.zeros(2, dtype=torch.long), 3, (0.5,), (0.3,))
    model = SmallCNN(num_classes=3, in_channels=1, width=4).eval()
    gen, disc = Generator(8, 1, z_dim=5, width=4).eval(), Discriminator(8, 1, width=4).eval()
    seen = []
    features = disc.features
    disc.features = lambda b: (seen.append(b.shape[0]), features(b))[1]

    def ctx(seed):
        return SelectionContext(model=model, pool=pool, labeled=np.zeros(0, dtype=np.int64),
                                rng=np.random.default_rng(seed), device=torch.device("cpu"), predictor=None)

    picks = {}
    for cache in (True, False):
        s = Asal(z_dim=5, z_steps=3, cache_features=cache)
        s.plugin.gen, s.plugin.disc, s.plugin.trained = gen, disc, True
        seen.clear()
        picks[cache] = [s.select(ctx(0), np.arange(0, 20), 4), s.select(ctx(1), np.arange(10, 30), 4)]
        pool_rows = sum(seen) - 2 * 4  # minus the synthetic samples' features
        assert pool_rows == (30 if cache else 40)  # rows 10..19 are candidates twice
    assert all(np.array_equal(a, b) for a, b in zip(picks[True], picks[False]))


def test_training_the_gan_leaves_the_classifiers_training_untouched(tmp_path):
    from conftest import SMOKE, run_al

    fast = ["strategy.gan_epochs=1.0", "strategy.z_steps=2"]
    gan = run_al(SMOKE + ["strategy=gaal", "budget.cycles=1"] + fast, tmp_path / "gaal")
    plain = run_al(SMOKE + ["strategy=random", "budget.cycles=1"], tmp_path / "random")
    assert gan[0]["gan_train_time_s"] > 0
    assert gan[0]["train_loss"] == plain[0]["train_loss"] and gan[0]["test_loss"] == plain[0]["test_loss"]


@pytest.mark.xfail(torch.cuda.is_available(), strict=False,
                   reason="on an H200 (2026-11-30, bf16 autocast) the resumed run's cycle 2 differed (test_acc 0.320 vs "
                          "0.336); tod's and the ensembles' resume tests were bit-identical there; cause not established "
                          "(no device time left): tests/test_cuda.py's warm-start resume test narrows it down")
def test_a_warm_start_run_resumed_after_an_interrupt_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    from conftest import SMOKE, run_interrupted_and_resumed

    args = SMOKE + ["strategy=asal", "budget.cycles=3", "trainer.warm_start=true", "strategy.gan_epochs=1.0",
                    "strategy.z_steps=2"]
    whole, resumed = run_interrupted_and_resumed(args, tmp_path, monkeypatch)
    assert whole == resumed and len(whole) == 3


@pytest.mark.parametrize("optimizer, objective", [("sgd", margin_sq), ("adam", neg_entropy)])
def test_latent_search_takes_gradients_in_z_only_and_equals_a_full_backward(optimizer, objective):
    """synthesize() asks autograd for d loss / d z alone; a straightforward loop with loss.backward()
    (which also fills every weight's .grad) must end at the same z, bit for bit, and the networks'
    parameters must come out without gradients."""
    torch.manual_seed(0)
    gen, clf = Generator(8, 3, z_dim=6, width=4).eval(), ResNet18(5, width=4).eval()
    classify = Classifier(clf, [0.5] * 3, [0.25] * 3, torch.device("cpu"))
    z0 = torch.randn(7, 6)
    z, obj = synthesize(gen, classify, z0, objective, steps=4, lr=0.05, optimizer=optimizer, z_penalty=0.1, chunk=3)
    assert all(p.grad is None for p in (*gen.parameters(), *clf.parameters()))
    want = []
    for s in range(0, 7, 3):
        zc = z0[s:s + 3].clone().requires_grad_(True)
        opt = torch.optim.SGD([zc], lr=0.05) if optimizer == "sgd" else torch.optim.Adam([zc], lr=0.05)
        for _ in range(4):
            loss = objective(classify(gen(zc)).logits.float()).sum() + 0.1 * zc.pow(2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        want.append(zc.detach())
    assert torch.equal(z, torch.cat(want))
    assert not torch.equal(z, z0)
    with torch.no_grad():
        assert torch.equal(obj, objective(classify(gen(z)).logits.float()))
