"""Golden tests: SCAL's supervised contrastive loss against its authors' code (Khosla et al.'s
SupContrast) and by hand, and the FeatSim query on hand-made features.

Method: the classifier is trained with cross-entropy + the supervised contrastive loss; FeatSim selects
the candidates least similar (max cosine) to the labeled set in feature space.
References: Krishnan et al., "Robust Contrastive Active Learning with Feature-guided Query Strategies",
arXiv:2109.06873 (no public code found: searched GitHub through the code/docs/pages indexes for
"featuresim", "SCAL", the title and the authors' names; the query is tested on hand-made features whose
answer is known); Khosla et al., arXiv:2004.11362.

Reference code: HobbitLong/SupContrast at commit 66a8fe53880d6a1084b2e4e0db0a019024d6d41a, run outside
this repository (torch 2.14.1, CPU, float64 default dtype) by a harness that called `losses.SupConLoss(
temperature, base_temperature)(features, labels)` (contrast_mode "all") on
  - torch.manual_seed(1); features = normalize(randn(6, 2, 5), dim=2) (6 images x 2 views), labels
    [0, 1, 0, 2, 1, 0]: 12.177659360892095 (tau 0.07, base 0.07), 21.361856887355255 (0.5, 0.07),
    8.692903275415647 (0.1, 0.1); without labels (SimCLR, tau = base = 0.5): 2.9312591602092293;
  - torch.manual_seed(2); normalize(randn(4, 1, 3), dim=2), labels [0, 1, 1, 2] (anchors 0 and 3 have no
    positive; the code's edge case): 3.5461819083201176 (tau = base = 0.07).
Pinned to 1e-10 relative. Ablations that fail here: dropping the positives' numerator (log-sum-exp
only), counting each anchor against itself in the denominator, averaging over the positives of the
whole batch instead of per anchor: every pinned value moves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.supcon import feature_similarity, supcon_loss
from al_bench.strategies.scal_featsim import ScalFeatSim


def fixed_views():
    torch.manual_seed(1)
    f = torch.nn.functional.normalize(torch.randn(6, 2, 5, dtype=torch.float64), dim=2)
    return [f[:, 0], f[:, 1]]


@pytest.mark.parametrize("tau, base, expected", [(0.07, 0.07, 12.177659360892095), (0.5, 0.07, 21.361856887355255),
                                                 (0.1, None, 8.692903275415647)])
def test_supcon_pinned_against_supcontrast(tau, base, expected):
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    assert supcon_loss(fixed_views(), labels, tau, base).item() == pytest.approx(expected, rel=1e-10)


def test_supcon_without_positives_and_as_simclr_pinned():
    torch.manual_seed(2)
    g = torch.nn.functional.normalize(torch.randn(4, 1, 3, dtype=torch.float64), dim=2)
    assert supcon_loss([g[:, 0]], torch.tensor([0, 1, 1, 2]), 0.07).item() == pytest.approx(3.5461819083201176,
                                                                                            rel=1e-10)
    # SimCLR = every image its own class
    assert supcon_loss(fixed_views(), torch.arange(6), 0.5).item() == pytest.approx(2.9312591602092293, rel=1e-10)


def by_hand(z, y, tau):
    """The definition, one anchor and one positive at a time."""
    total = 0.0
    for i in range(len(z)):
        dots = {a: float(z[i] @ z[a]) / tau for a in range(len(z)) if a != i}
        denominator = sum(math.exp(d) for d in dots.values())
        pos = [p for p in dots if y[p] == y[i]]
        total += -sum(math.log(math.exp(dots[p]) / denominator) for p in pos) / max(len(pos), 1)
    return total / len(z)


def test_supcon_on_a_four_sample_batch_by_hand():
    # two unit vectors per class, one view each, tau = 1: anchor 0's positive gives e^1 / (e^1 + e^0 + e^0)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert supcon_loss([z], y, 1.0).item() == pytest.approx(math.log(math.e + 2) - 1, rel=1e-12)
    # an irregular batch with two views, tau 0.3: the vectorised loss equals the loop over the definition
    torch.manual_seed(3)
    v = torch.nn.functional.normalize(torch.randn(4, 2, 3, dtype=torch.float64), dim=2)
    y = torch.tensor([0, 1, 0, 0])
    flat = torch.cat([v[:, 0], v[:, 1]])
    assert supcon_loss([v[:, 0], v[:, 1]], y, 0.3).item() == pytest.approx(by_hand(flat, y.repeat(2), 0.3), rel=1e-12)


def ctx_with(features, labeled, seed=0):
    f = torch.as_tensor(features, dtype=torch.float32)
    return SelectionContext(model=None, pool=None, labeled=np.asarray(labeled), rng=np.random.default_rng(seed),
                            device=torch.device("cpu"), predictor=lambda idx, mc_samples=0: {"embedding": f[idx]})


def planted():
    """Labeled rows 0..19 around directions e1 and e2; candidates 20..59 near them, 60 on the diagonal
    (e1 + e2), 61 along e3 (far from every labeled row), 62 between them but near e1."""
    rng = np.random.default_rng(0)
    e = np.eye(4)
    lab = np.concatenate([e[0] + 0.05 * rng.standard_normal((10, 4)), e[1] + 0.05 * rng.standard_normal((10, 4))])
    near = np.concatenate([e[0] + 0.05 * rng.standard_normal((20, 4)), e[1] + 0.05 * rng.standard_normal((20, 4))])
    special = np.stack([e[0] + e[1] + 0.01 * rng.standard_normal(4), e[2] + 0.2 * e[3], e[0] + 0.3 * e[1]])
    return 3.0 * np.concatenate([lab, near, special]), np.arange(20), np.arange(20, 63)


def test_featsim_picks_the_planted_far_points():
    feats, labeled, candidates = planted()
    picks = ScalFeatSim().select(ctx_with(feats, labeled), candidates, 2)
    assert picks.tolist() == [61, 60]  # cos to nearest labeled: ~0.2 (e3), ~0.71 (diagonal)
    # cosine, not distance: scaling a candidate changes nothing
    feats[61] *= 0.01
    assert ScalFeatSim().select(ctx_with(feats, labeled), candidates, 2).tolist() == [61, 60]


def test_featsim_max_and_mean_differ_where_they_should():
    feats, labeled, candidates = planted()
    f = torch.as_tensor(feats, dtype=torch.float64)
    nearest = feature_similarity(f[candidates], f[labeled], "max")
    mean = feature_similarity(f[candidates], f[labeled], "mean")
    # the diagonal point 60 is far from every labeled row (max cos ~0.71) but close to their mean
    # direction (mean cos ~0.71 > ~0.5 for the points near e1 or e2); 62 is near the e1 group (~0.96)
    assert nearest[62 - 20] > 0.9 > nearest[60 - 20]
    assert mean[60 - 20] > mean[candidates < 60].max()
    picks_mean = ScalFeatSim(similarity="mean").select(ctx_with(feats, labeled), candidates, 3).tolist()
    assert picks_mean[0] == 61 and 60 not in picks_mean


def test_feature_similarity_blocks_agree():
    torch.manual_seed(0)
    c, lab = torch.randn(50, 6, dtype=torch.float64), torch.randn(7, 6, dtype=torch.float64)
    assert torch.allclose(feature_similarity(c, lab, block=8), feature_similarity(c, lab, block=4096))


def one_step(detach_classifier, supcon_weight):
    import contextlib

    from al_bench.data.synthetic import synthetic
    from al_bench.models.small_cnn import SmallCNN
    from al_bench.strategies.common.supcon import SupConPlugin
    from al_bench.training import TrainSettings, train_context
    from al_bench.training.plugin import Step

    torch.manual_seed(0)
    pool = synthetic(n_train=40, n_test=8, num_classes=4, image_size=8, seed=0)
    settings = TrainSettings(epochs=2, batch_size=16, milestones=[1], progress=False, precision="fp32", crop_padding=1)
    model = SmallCNN(num_classes=pool.num_classes, in_channels=pool.in_channels, width=8)
    plugin = SupConPlugin(0.07, None, "mlp", 16, supcon_weight, detach_classifier)
    rows = torch.arange(16)
    ctx = train_context(model, pool, rows.numpy(), settings, 0, torch.Generator().manual_seed(0), plugin)
    plugin.setup(model, ctx, warm_start=False)
    opts = {"backbone": torch.optim.SGD(model.parameters(), lr=0.0),
            "projection_head": torch.optim.SGD(plugin.head.parameters(), lr=0.0)}
    step = Step(model=model, forward=model, x=plugin.views(rows), y=pool.train_y[rows], index=rows, epoch=0,
                optimizers=opts, scaler=torch.amp.GradScaler("cpu", enabled=False), autocast=contextlib.nullcontext)
    model.train()
    plugin.update(step)
    trunk = [p.grad for n, p in model.named_parameters() if not n.startswith("fc.")]
    return trunk, model.fc.weight.grad, plugin.head[0].weight.grad, step.logs["supcon_loss"]


def test_supcon_plugin_gradients_reach_what_they_should():
    trunk, fc, head, sc = one_step(detach_classifier=False, supcon_weight=1.0)
    assert sc > 0 and all(g.abs().sum() > 0 for g in trunk) and fc.abs().sum() > 0 and head.abs().sum() > 0
    # Khosla's reading: cross-entropy trains only the linear head; without SupCon the trunk learns nothing
    trunk, fc, head, _ = one_step(detach_classifier=True, supcon_weight=0.0)
    assert all(g.abs().sum() == 0 for g in trunk) and fc.abs().sum() > 0
