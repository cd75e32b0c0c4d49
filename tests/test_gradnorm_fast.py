"""gradnorm's per-layer engine (one batched forward and backward; each Linear/Conv2d/BatchNorm layer's
per-sample gradient norm from its input and output gradient) gives the per-sample backward loop's
scores to 1e-5 relative and the same picks, on random models with every supported layer type; models
it cannot account for fall back to the loop under `engine: auto` and are refused under `engine: layers`."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.data.augment import Normalize
from al_bench.data.pool import Pool
from al_bench.models.base import Backbone
from al_bench.models.resnet import ResNet18
from al_bench.models.small_cnn import SmallCNN
from al_bench.models.vgg import VGG16
from al_bench.strategies import gradnorm as G
from al_bench.strategies.base import SelectionContext

RTOL = 1e-5  # fp32 against fp32 on the golden input: ~1e-6 apart
# fp32 on the random deep models: the loop and the layers engine are each up to ~1.2e-5 from an fp64 evaluation
# (VGG16: 13 layers, gradient norms in the hundreds), so ~1e-5 apart; the fp64 test below checks the algebra
RTOL_DEEP = 5e-5


class TokenNet(Backbone):
    """A Linear over the image's last axis (a (B, C H, W) input: per-sample sums over C H rows), BatchNorm1d,
    a bias-free Linear: the Linear cases the CNNs do not have."""

    stage_channels = (6,)
    embed_dim = 6

    def __init__(self):
        super().__init__(0.0)
        self.mix = nn.Linear(6, 5)
        self.bn = nn.BatchNorm1d(5)
        self.proj = nn.Linear(5, 6, bias=False)
        self.fc = nn.Linear(6, 4)

    def features(self, x):
        h = torch.tanh(self.mix(x.flatten(1, 2)))  # (B, C H, 5)
        e = torch.tanh(self.proj(self.bn(h.mean(1))))
        return [h], e


def calibrate(model, pool, seed):
    """BatchNorm running statistics from the pool's images (as after training: deep random VGGs would
    otherwise map every image to nearly the same logits) and random affine parameters."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
        with torch.no_grad():
            m.weight.copy_(1 + 0.3 * torch.randn(m.num_features, generator=g))
            m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    model.train()
    with torch.no_grad():
        model(Normalize(pool.mean, pool.std, "cpu", channels_last=False)(pool.train_x))
    return model.eval()


MODELS = {
    "resnet18": lambda: ResNet18(5, width=4),  # 3x3 convs (explicit products), 1x1 shortcuts, 1x1 maps (t = 1)
    "small_cnn": lambda: SmallCNN(5, in_channels=3, width=4),
    "vgg16": lambda: VGG16(5, width=4),  # 2x2 and 1x1 maps deep down (Gram identity, t = 1)
    "tokens": TokenNet,
}


def pool_of(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, size, 6, 3), dtype=torch.uint8, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    return Pool(name="t", train_x=x, train_y=y, test_x=x, test_y=y, num_classes=5, mean=(0.5, 0.4, 0.45),
                std=(0.25, 0.3, 0.2))


def ctx_for(model, pool):
    return SelectionContext(model=model, pool=pool, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=None)


@pytest.mark.parametrize("word", sorted(MODELS))
@pytest.mark.parametrize("mode,reduction", [("entropy", "sum"), ("entropy", "total"), ("expected", "sum")])
def test_layers_engine_equals_the_per_sample_loop(word, mode, reduction):
    torch.manual_seed(0)
    pool = pool_of(24, 6 if word == "tokens" else 8, 2)
    model = calibrate(MODELS[word](), pool, 1)
    cands = np.random.default_rng(3).permutation(24)[:20]
    loop = G.Gradnorm(mode, reduction=reduction, engine="loop", batch_size=7)
    fast = G.Gradnorm(mode, reduction=reduction, engine="layers", batch_size=7)
    want, got = loop.scores(ctx_for(model, pool), cands), fast.scores(ctx_for(model, pool), cands)
    assert np.allclose(got.numpy(), want.numpy(), rtol=RTOL_DEEP, atol=0)
    assert fast.select(ctx_for(model, pool), cands, 8).tolist() == loop.select(ctx_for(model, pool), cands, 8).tolist()


@pytest.mark.parametrize("word", sorted(MODELS))
def test_layers_engine_is_the_same_function_in_fp64(word):
    """In fp64 (the loss itself stays fp32 in both, as the authors') only the order of the sums differs."""
    pool = pool_of(12, 6 if word == "tokens" else 8, 4)
    torch.manual_seed(1)
    model = calibrate(MODELS[word](), pool, 2).double()
    x = Normalize(pool.mean, pool.std, "cpu", channels_last=False, dtype=torch.float64)(pool.train_x)
    for mode, reduction in [("entropy", "sum"), ("entropy", "total"), ("expected", "sum"), ("expected", "total")]:
        want = G.full_gradnorm(model, x, mode, reduction, engine="loop")
        assert torch.allclose(G.layer_gradnorm(model, x, mode, reduction), want, rtol=1e-12, atol=0)


def test_layers_engine_equals_the_authors_on_the_golden_input():
    path = Path(__file__).parent / "golden" / "test_gradnorm.py"
    spec = importlib.util.spec_from_file_location("golden_gradnorm_inputs", path)
    golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(golden)
    model = golden.tiny_model().train()
    scores = G.Gradnorm(engine="layers", batch_size=4).scores(golden.ctx_for(model, golden.tiny_pool()), np.arange(10))
    assert np.allclose(scores.numpy(), golden.AUTHORS, rtol=RTOL, atol=0)
    assert model.training


class Odd(Backbone):
    """A small CNN whose trunk breaks one of the per-layer engine's conditions, by `how`."""

    stage_channels = (4,)
    embed_dim = 4

    def __init__(self, how):
        super().__init__(0.0)
        self.how = how
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        if how == "shared":
            self.conv2, self.conv3 = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
            self.conv3.weight = self.conv2.weight  # one Parameter in two layers
        if how == "custom":
            self.scale = nn.Parameter(torch.tensor(1.5))  # a parameter on a module of unknown type

    def features(self, x):
        h = self.conv(x)
        if self.how == "inplace":
            h = torch.relu_(h)  # the conv's output overwritten
        else:
            h = torch.relu(h)
        if self.how == "twice":
            h = torch.relu(self.conv(h[:, :3]))
        if self.how == "functional":
            h = h + nn.functional.conv2d(h[:, :3], self.conv.weight, padding=1)  # the weight read outside its layer
        if self.how == "shared":
            h = torch.relu(self.conv3(torch.relu(self.conv2(h))))
        if self.how == "custom":
            h = h * self.scale
        e = h.mean((2, 3))
        return [h], e


@pytest.mark.parametrize("how", ["inplace", "twice", "functional", "shared", "custom"])
def test_models_it_cannot_account_for_fall_back_to_the_loop(how):
    torch.manual_seed(0)
    model = Odd(how).eval()
    pool = pool_of(6, 4, 5)
    want = G.Gradnorm(engine="loop").scores(ctx_for(model, pool), np.arange(6))
    got = G.Gradnorm(engine="auto").scores(ctx_for(model, pool), np.arange(6))
    assert torch.equal(got, want)  # the loop's own numbers: auto fell back
    with pytest.raises(ConfigError, match="engine=layers"):
        G.Gradnorm(engine="layers").scores(ctx_for(model, pool), np.arange(6))


def test_auto_uses_the_layers_engine_on_cpu(monkeypatch):
    torch.manual_seed(0)
    pool = pool_of(10, 8, 2)
    model = calibrate(SmallCNN(5, in_channels=3, width=4), pool, 1)
    want = G.Gradnorm(engine="loop").scores(ctx_for(model, pool), np.arange(10))

    def no_loop(*args, **kwargs):
        raise AssertionError("auto ran the per-sample loop on a model the layers engine supports")

    monkeypatch.setattr(G, "full_gradnorm", no_loop)
    got = G.Gradnorm(engine="auto").scores(ctx_for(model, pool), np.arange(10))
    assert np.allclose(got.numpy(), want.numpy(), rtol=RTOL, atol=0)


def test_batch_size_null_is_128_for_layers_and_32_for_the_loop(monkeypatch):
    pool = pool_of(300, 4, 2)
    model = calibrate(SmallCNN(5, in_channels=3, width=4), pool, 1)
    seen = []
    for name in ("layer_gradnorm", "full_gradnorm"):
        real = getattr(G, name)

        def spy(model, x, *args, real=real, name=name):
            seen.append((name, len(x)))
            return torch.zeros(len(x), dtype=torch.float64) if name == "full_gradnorm" else real(model, x, *args)

        monkeypatch.setattr(G, name, spy)
    G.Gradnorm().scores(ctx_for(model, pool), np.arange(300))
    assert seen == [("layer_gradnorm", 128), ("layer_gradnorm", 128), ("layer_gradnorm", 44)]
    seen.clear()
    G.Gradnorm(engine="loop").scores(ctx_for(model, pool), np.arange(300))
    assert seen == [("full_gradnorm", 32)] * 9 + [("full_gradnorm", 12)]
