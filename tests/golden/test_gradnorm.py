"""Golden test: gradnorm equals the authors' code on a tiny fixed CNN and ten fixed images.

Reference: xulabs/aitom @ 7d5d07c8e7bc4a6f57e2388564b0ae35c62f88d3 (the commit that added
aitom/ml/active_learning/al_gradnorm; unchanged at HEAD dc5b27517fbe5f17a13ef7c0a2c101c82b4c1e95),
file aitom/ml/active_learning/al_gradnorm/main.py, functions get_uncertainty and compute_gradnorm,
run on CPU (their `.cuda()` calls made no-ops) with SCHEME = 1 (entropy-gradnorm, config.py's
default) and NUM_CLASS = 3, on `tiny_model()` (eval mode, as get_uncertainty sets it) and a loader of
ten batches of one image each: `tiny_pool().train_x` normalised by al_bench.data.augment.Normalize
with the pool's mean and std (NCHW, fp32). SCHEME = 0 gave the same scores to 4e-7 relative.
Their `uncertainty` vector (sum over parameter tensors of each gradient's L2 norm) is pinned below;
their selection is np.argsort(uncertainty)[-k:], the highest last, pinned as PICKS (highest first).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.data.pool import Pool
from al_bench.models.base import Backbone
from al_bench.strategies.base import SelectionContext

# the authors' scores for tiny_pool's ten images, in pool order
AUTHORS = [1.3069919347763062, 1.647469401359558, 1.7326412200927734, 1.3803179264068604, 1.165759801864624,
           2.1627445220947266, 1.1658414602279663, 1.3074334859848022, 1.1344492435455322, 0.7679633498191833]
PICKS = [5, 2, 1, 3]  # their top 4, highest first


class TinyNet(Backbone):
    """conv-BN-ReLU, strided conv-ReLU, global average pool, linear: BatchNorm so that eval mode matters."""

    stage_channels = (4, 6)
    embed_dim = 6

    def __init__(self):
        super().__init__(0.0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6, 3)

    def features(self, x):
        s1 = torch.relu(self.bn1(self.conv1(x)))
        s2 = torch.relu(self.conv2(s1))
        return [s1, s2], s2.mean((2, 3))


def tiny_model() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # running statistics far from a batch's own, so train-mode BatchNorm would differ
        model.bn1.running_mean.copy_(torch.tensor([0.3, -0.2, 0.1, 0.5]))
        model.bn1.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.25]))
        model.bn1.weight.copy_(torch.tensor([1.2, 0.8, -0.5, 1.0]))
        model.bn1.bias.copy_(torch.tensor([0.1, -0.1, 0.2, 0.0]))
        model.fc.weight.mul_(4.0)  # confident enough that the entropies differ clearly
    return model.eval()


def tiny_pool() -> Pool:
    torch.manual_seed(1)
    x = torch.randint(0, 256, (10, 6, 6, 3), dtype=torch.uint8)
    y = torch.zeros(10, dtype=torch.long)
    return Pool(name="tiny", train_x=x, train_y=y, test_x=x, test_y=y, num_classes=3,
                mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.3))


def ctx_for(model, pool) -> SelectionContext:
    from al_bench.training import predict

    def predictor(indices, mc_samples=0):
        # fp32 as the authors ran (precision "auto" would be bf16 on CPUs with AMX-BF16)
        return predict(model, pool.train_x[torch.as_tensor(indices)], pool.mean, pool.std, precision="fp32")

    return SelectionContext(model=model, pool=pool, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=predictor)


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_scores_equal_the_authors_gradient_norms(engine):
    from al_bench.strategies.gradnorm import Gradnorm

    model = tiny_model().train()  # scored in eval mode whatever the caller's mode, as the authors do
    scores = Gradnorm(engine=engine, batch_size=4).scores(ctx_for(model, tiny_pool()), np.arange(10))
    # fp32 gradients against their fp32 backward passes: agreement to about 4e-7
    assert np.allclose(scores.numpy(), AUTHORS, rtol=1e-5, atol=0)
    assert model.training  # the caller's mode is restored


def test_picks_equal_the_authors_in_order():
    from al_bench.strategies.gradnorm import Gradnorm

    pool = tiny_pool()
    assert Gradnorm().select(ctx_for(tiny_model(), pool), np.arange(10), 4).tolist() == PICKS
    # a candidate subset in another order: the same pool indices win
    cands = np.array([9, 3, 5, 0, 1, 2])
    assert Gradnorm(batch_size=4).select(ctx_for(tiny_model(), pool), cands, 3).tolist() == [5, 2, 1]


def test_last_layer_option_is_the_closed_form_of_the_same_gradient_on_fc_only():
    from al_bench.strategies.gradnorm import Gradnorm

    model, pool = tiny_model(), tiny_pool()
    x = ctx_for(model, pool).pool.train_x
    from al_bench.data.augment import Normalize
    inputs = Normalize(pool.mean, pool.std, "cpu", channels_last=False)(x)
    want = []
    for i in range(10):  # autograd on the fc weight and bias only, summed per-tensor norms
        p = torch.softmax(model(inputs[i:i + 1]).logits, 1)
        gw, gb = torch.autograd.grad(-(p * torch.log(p)).sum(), [model.fc.weight, model.fc.bias])
        want.append(float(gw.norm() + gb.norm()))
    got = Gradnorm(scope="last_layer").scores(ctx_for(model, pool), np.arange(10))
    assert np.allclose(got.numpy(), want, rtol=1e-5)


def test_expected_mode_engines_agree():
    from al_bench.strategies.gradnorm import Gradnorm

    model, pool = tiny_model(), tiny_pool()
    a = Gradnorm(mode="expected", engine="vmap").scores(ctx_for(model, pool), np.arange(10))
    b = Gradnorm(mode="expected", engine="loop").scores(ctx_for(model, pool), np.arange(10))
    assert np.allclose(a.numpy(), b.numpy(), rtol=1e-5)
