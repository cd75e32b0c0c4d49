"""Golden tests: DALBT's Barlow Twins loss against the Barlow Twins authors' code, its key terms, its
training plugin and its selection rule.

Method: the classifier is trained with cross-entropy + a Barlow Twins loss on two augmented views of
labeled and unlabeled images; the most uncertain candidates (entropy) are selected.
References: Mandivarapu, Camp & Estrada, "Deep Active Learning Using Barlow Twins", 2022 (no public code
found: searched GitHub through the code/docs/pages indexes for "DALBT", the title and the authors' names;
the selection rule is tested on hand-made probabilities instead); Zbontar et al., arXiv:2103.03230.

Reference code: facebookresearch/barlowtwins at commit 8e8d284ca0bc02f88b92328e53f9b901e86b4a3c, run
outside this repository (torch 2.14.1, CPU, float64 default dtype, a one-process gloo group for its
all_reduce) by a harness that built `main.BarlowTwins(args)` with args projector="6", batch_size=8 and
lambd in {0.0051, 1.0}, replaced `backbone` and `projector` by nn.Identity (so the call measures the
loss: its BatchNorm1d(6, affine=False) in training mode, C = bn(z1)^T bn(z2) / 8, on- and off-diagonal
sums) and called `forward(z1, z2)` on torch.manual_seed(0); z1 = randn(8, 6); z2 = z1 + 0.3 randn(8, 6)
(float64). Recorded: 0.032811262944377174 (lambd 0.0051) and 4.0848438890918795 (lambd 1.0); pinned to
1e-10 relative. Ablations that fail here: dropping the off-diagonal term (test_pinned_against_the_authors
at lambd 1.0 and test_decorrelation_is_rewarded), dropping the on-diagonal term (identical views no
longer score 0 below their shuffled copy: test_identical_decorrelated_views_cost_nothing).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.data.synthetic import synthetic
from al_bench.models.small_cnn import SmallCNN
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.dalbt import BarlowTwinsPlugin, Dalbt, barlow_twins_loss, cross_correlation
from al_bench.strategies.dalbt import projector as dalbt_projector
from al_bench.training import TrainSettings, fit, train_context


def fixed_pair():
    torch.manual_seed(0)
    z1 = torch.randn(8, 6, dtype=torch.float64)
    return z1, z1 + 0.3 * torch.randn(8, 6, dtype=torch.float64)


@pytest.mark.parametrize("lambd, expected", [(0.0051, 0.032811262944377174), (1.0, 4.0848438890918795)])
def test_pinned_against_the_authors(lambd, expected):
    z1, z2 = fixed_pair()
    assert barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(expected, rel=1e-10)


# columns of +-1 with mean 0, pairwise orthogonal: standardised they stay the same and C = Z^T Z / 4 = I
HADAMARD = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)


def test_identical_decorrelated_views_cost_nothing():
    assert torch.allclose(cross_correlation(HADAMARD, HADAMARD), torch.eye(3, dtype=torch.float64), atol=1e-4)
    assert barlow_twins_loss(HADAMARD, HADAMARD, 0.0051).item() == pytest.approx(0.0, abs=1e-8)
    # the same columns in another order: C is a permutation matrix, on-diagonal 3 x 1, off-diagonal 3 x 1
    shuffled = HADAMARD[:, [1, 2, 0]]
    assert barlow_twins_loss(HADAMARD, shuffled, 0.5).item() == pytest.approx(3 + 0.5 * 3, rel=1e-4)


def test_decorrelation_is_rewarded():
    # identical views whose columns 0 and 1 are the same feature: invariance is perfect (C_ii = 1) and
    # only the redundancy term sees the duplicate: C_01 = C_10 = 1 -> loss = lambda x 2
    z = HADAMARD.clone()
    z[:, 1] = z[:, 0]
    assert barlow_twins_loss(z, z, 0.25).item() == pytest.approx(0.5, rel=1e-4)


def test_uncertainty_rule_picks_the_flattest_predictions():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.34, 0.33, 0.33], [0.6, 0.3, 0.1], [0.5, 0.45, 0.05]])
    ctx = SelectionContext(model=None, pool=None, labeled=np.array([], dtype=int), rng=np.random.default_rng(0),
                           device=torch.device("cpu"), predictor=lambda idx, mc_samples=0: {"probs": probs[idx - 10]})
    candidates = np.arange(10, 14)
    # entropies 0.39, 1.10, 0.90, 0.86 nats; top-2 gaps 0.85, 0.01, 0.30, 0.05; 1 - p_max 0.1, 0.66, 0.4, 0.5
    assert Dalbt(rule="entropy").select(ctx, candidates, 2).tolist() == [11, 12]
    assert Dalbt(rule="margin").select(ctx, candidates, 2).tolist() == [11, 13]
    assert Dalbt(rule="least_confidence").select(ctx, candidates, 2).tolist() == [11, 13]


def test_plugin_trains_the_projector_on_labeled_and_unlabeled_views():
    torch.manual_seed(0)
    pool = synthetic(n_train=120, n_test=20, num_classes=4, image_size=8, seed=0)
    settings = TrainSettings(epochs=1, batch_size=16, lr=0.05, milestones=[], progress=False, precision="fp32",
                             crop_padding=1)
    model = SmallCNN(num_classes=pool.num_classes, in_channels=pool.in_channels, width=8)
    plugin = BarlowTwinsPlugin([32, 16], lambd=0.0051, bt_weight=1.0, unlabeled_batch_size=8)
    gen = torch.Generator().manual_seed(0)
    plugin.setup(model, train_context(model, pool, np.arange(40), settings, 0, gen, plugin), warm_start=False)
    seen = []
    import al_bench.strategies.dalbt as dalbt_module
    original = dalbt_module.barlow_twins_loss

    def spy(z1, z2, lambd):
        seen.append(len(z1))
        return original(z1, z2, lambd)

    dalbt_module.barlow_twins_loss = spy
    try:
        stats = fit(model, pool, np.arange(40), settings, gen, plugin)
    finally:
        dalbt_module.barlow_twins_loss = original
    assert np.isfinite(stats["bt_loss"]) and stats["bt_loss"] > 0
    # each step's correlation is over the 16 labeled + 8 unlabeled images (40 labeled = 16 + 16 + 8)
    assert seen[:3] == [24, 24, 16]
    assert plugin.projector[0].weight.grad is not None


def test_empty_projector_is_refused():
    from al_bench import ConfigError

    with pytest.raises(ConfigError, match="projector"):
        Dalbt(projector=[])


def test_projector_defaults_to_the_codes_width_ratio():
    # the code: 2048 features -> 8192-8192-8192; null here = 4 x the embedding width, three layers
    assert Dalbt().plugin.layer_sizes(2048) == [8192, 8192, 8192]
    assert Dalbt().plugin.layer_sizes(128) == [512, 512, 512]
    assert Dalbt(projector=[64, 32]).plugin.layer_sizes(128) == [64, 32]
    layers = dalbt_projector(2048, [8192, 8192, 8192])
    assert [m.out_features for m in layers if isinstance(m, torch.nn.Linear)] == [8192, 8192, 8192]
    assert all(m.bias is None for m in layers if isinstance(m, torch.nn.Linear))
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in layers) == 2
