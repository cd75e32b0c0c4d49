"""Golden test: DFAL equals the authors' DeepFool distances on a tiny fixed CNN and ten fixed images.

Reference: ej0cl6/deep-active-learning @ eea3d2c703b83ce412f7dd6f518c017713d15ced ("fix bug for deepfool"),
query_strategies/adversarial_deepfool.py, AdversarialDeepFool.cal_dis with max_iter = 50, called image by
image as their query() does, on a stub whose net.clf is `tiny_model()` in eval mode returning (logits,
embedding), with x = `tiny_pool().train_x` normalised by al_bench.data.augment.Normalize (the pool's mean and
std, NCHW fp32), the input their handlers give the net. They return the squared norm (eta * eta).sum() and
select dis.argsort()[:n]; the square roots are pinned below, and the argsort as the ordered picks.
(SineZHAN/deepALplus @ 93c2884e40e9a0b55cd2cf9527d3d1ff9d7e0c20 has the same function without that fix:
value_l is never updated, so each step goes to the last class rather than the nearest boundary; its norms
here differ, e.g. image 1: 1.848 against 0.314.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from al_bench.data.pool import Pool
from al_bench.models.base import Backbone
from al_bench.strategies.base import SelectionContext

# sqrt of the authors' squared perturbation norms for tiny_pool's ten images, in pool order
AUTHORS_NORMS = [0.18975379523777738, 0.3140720403939767, 0.1299049960817592, 0.5732130728871341,
                 0.4253436473341553, 0.08165899747616208, 0.05918529447740843, 0.7835704674499395,
                 0.2835041288103794, 0.09398982050492069]
AUTHORS_ORDER = [6, 5, 9, 2, 0, 8, 1, 4, 3, 7]  # dis.argsort(): smallest perturbation first


class TanhNet(Backbone):
    """conv-BN-tanh, flattened, linear to 4 classes: smooth, so DeepFool needs several steps."""

    stage_channels = (5,)
    embed_dim = 80

    def __init__(self):
        super().__init__(0.0)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.fc = nn.Linear(80, 4)

    def features(self, x):
        s = torch.tanh(self.bn(self.conv(x)))
        return [s], s.flatten(1)


def tiny_model() -> TanhNet:
    torch.manual_seed(0)
    model = TanhNet()
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.0, 0.3, -0.2]))
        model.bn.running_var.copy_(torch.tensor([0.5, 1.5, 1.0, 0.8, 2.0]))
        model.conv.weight.mul_(2.0)
    return model.eval()


def tiny_pool() -> Pool:
    torch.manual_seed(1)
    x = torch.randint(0, 256, (10, 4, 4, 3), dtype=torch.uint8)
    y = torch.zeros(10, dtype=torch.long)
    return Pool(name="tiny", train_x=x, train_y=y, test_x=x, test_y=y, num_classes=4,
                mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.3))


def ctx_for(model, pool) -> SelectionContext:
    return SelectionContext(model=model, pool=pool, labeled=np.zeros(0, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=None)


def test_perturbation_norms_equal_the_authors():
    from al_bench.strategies.dfal import Dfal

    model = tiny_model().train()  # DeepFool runs in eval mode whatever the caller's mode, as the authors do
    norms, flipped = Dfal(batch_size=4).norms(ctx_for(model, tiny_pool()), np.arange(10))
    # batched fp32 autograd against their per-image fp32 loop: agreement to about 1e-6
    assert np.allclose(norms, AUTHORS_NORMS, rtol=1e-5, atol=0)
    assert flipped.all()  # every image crossed the boundary within 50 iterations, as in their loop
    assert model.training


@pytest.mark.parametrize("k", [4, 10])
def test_picks_equal_the_authors_in_order(k):
    from al_bench.strategies.dfal import Dfal

    assert Dfal().select(ctx_for(tiny_model(), tiny_pool()), np.arange(10), k).tolist() == AUTHORS_ORDER[:k]

