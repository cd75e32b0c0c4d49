"""Strategy zoo, part 1: each strategy on tiny hand-made inputs whose right answer is known, plus
one two-cycle run of every strategy config on the synthetic dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from al_bench import ConfigError
from al_bench.data.pool import Pool
from al_bench.models.base import Backbone
from al_bench.strategies.base import SelectionContext


def make_ctx(emb=None, probs=None, mc_probs=None, labeled=(), model=None, pool=None, seed=0):
    """A SelectionContext whose predictor returns rows of hand-made tensors (indexed by pool index)."""
    n = next(t.shape[0] for t in (emb, probs, mc_probs) if t is not None)
    emb = torch.zeros(n, 2) if emb is None else emb.double()
    if probs is None:
        probs = mc_probs.mean(1) if mc_probs is not None else torch.full((n, 2), 0.5)

    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        out = {"probs": probs[idx], "logits": torch.log(probs[idx]), "embedding": emb[idx]}
        if mc_samples:
            out["mc_probs"] = mc_probs[idx]
        return out

    return SelectionContext(model=model if model is not None else SimpleNamespace(dropout=0.5), pool=pool,
                            labeled=np.asarray(labeled, dtype=np.int64), rng=np.random.default_rng(seed),
                            device=torch.device("cpu"), predictor=predictor)


def blob(centre, offsets=((0, 0), (0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1))):
    return [(centre[0] + dx, centre[1] + dy) for dx, dy in offsets]


# --- MC dropout: bald, var_ratio, mean_std --------------------------------------------------------

# three candidates, S = 2 dropout samples, C = 2 classes
MC = torch.tensor([[[0.5, 0.5], [0.5, 0.5]],    # agreeing, uncertain: no disagreement at all
                   [[1.0, 0.0], [0.0, 1.0]],    # confident samples that contradict each other
                   [[0.9, 0.1], [0.6, 0.4]]])   # same vote, different confidence


def test_mc_dropout_scores_on_hand_made_samples():
    from al_bench.strategies.bald import Bald, bald
    from al_bench.strategies.mean_std import MeanStd, mean_std
    from al_bench.strategies.var_ratio import VarRatio, variation_ratio

    h = lambda q: -(q * math.log(q) + (1 - q) * math.log(1 - q))  # noqa: E731
    want = [0.0, math.log(2), h(0.75) - (h(0.9) + h(0.6)) / 2]  # H(mean) - mean H
    assert torch.allclose(bald(MC), torch.tensor(want, dtype=torch.float64))
    assert variation_ratio(MC).tolist() == [0.0, 0.5, 0.0]
    assert torch.allclose(mean_std(MC), torch.tensor([0.0, 0.5, 0.15], dtype=torch.float64))
    cands = np.arange(3)
    assert Bald(mc_samples=2).select(make_ctx(mc_probs=MC), cands, 3).tolist() == [1, 2, 0]
    assert MeanStd(mc_samples=2).select(make_ctx(mc_probs=MC), cands, 3).tolist() == [1, 2, 0]
    # candidates 0 and 2 tie: the selection's seeded generator orders them, each way for some seed
    orders = {tuple(VarRatio(mc_samples=2).select(make_ctx(mc_probs=MC, seed=s), cands, 3)) for s in range(20)}
    assert orders == {(1, 0, 2), (1, 2, 0)}


@pytest.mark.parametrize("word", ["bald", "batchbald", "epig", "balentacq"])
def test_mc_dropout_strategies_refuse_a_model_without_dropout(word):
    import importlib

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "strategy" / f"{word}.yaml")
    module, cls = cfg._target_.rsplit(".", 1)
    strategy = getattr(importlib.import_module(module), cls)()
    pool = SimpleNamespace(n_train=3)
    ctx = make_ctx(mc_probs=MC, model=SimpleNamespace(dropout=0.0, fc=nn.Linear(2, 2)), pool=pool)
    with pytest.raises(ConfigError, match=r"model\.dropout>0.*experiment=mc_dropout"):
        strategy.select(ctx, np.arange(3), 1)


def test_consistent_mc_probs_share_masks_across_inputs():
    from al_bench.strategies.common.mc_dropout import consistent_mc_probs

    fc = nn.Linear(4, 3)
    emb = torch.randn(1, 4).repeat(5, 1)  # five identical inputs
    ctx = make_ctx(emb=emb, model=SimpleNamespace(dropout=0.5, fc=fc))
    probs = consistent_mc_probs(ctx, np.arange(5), 6, "bald", torch.Generator().manual_seed(0))
    assert probs.shape == (5, 6, 3)
    assert torch.allclose(probs, probs[:1].expand(5, 6, 3))  # same mask per sample for every input
    assert not torch.allclose(probs[0], probs[0, :1].expand(6, 3))  # masks differ between samples


# --- BatchBALD ------------------------------------------------------------------------------------

def duplicates():
    """S = 4 weight samples w = (b1, b2); points 0 and 1 read b1 exactly, point 2 reads b2 noisily.
    BALD: 0 and 1 (log 2 each) before 2; BatchBALD knows 1 repeats 0 and takes 2."""
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    second = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.05, 0.95]])
    return torch.stack([first, first, second])


def test_batchbald_avoids_the_duplicate_that_bald_takes():
    from al_bench.strategies.bald import bald
    from al_bench.strategies.batchbald import batchbald_select

    mc = duplicates()
    assert np.argsort(-bald(mc).numpy(), kind="stable")[:2].tolist() == [0, 1]
    assert batchbald_select(mc, 2, num_joint_samples=10000).tolist() == [0, 2]


def test_batchbald_sampled_joint_entropy_matches_the_exact_one():
    from al_bench.strategies.batchbald import joint_entropy, sample_configs

    torch.manual_seed(0)
    probs = torch.softmax(2 * torch.randn(4, 5, 3), dim=2).double()  # N = 4, S = 5, C = 3
    picks = [0, 1]
    exact = torch.ones((1, 5), dtype=torch.float64)
    for i in picks:
        exact = (exact[:, None, :] * probs[i].T[None]).reshape(-1, 5)
    h_exact = joint_entropy(exact, torch.ones(exact.shape[0], dtype=torch.float64), probs)
    sampled, log_scale = sample_configs(probs, picks, 200000, torch.Generator().manual_seed(0))
    weights = 5 / (sampled.shape[0] * sampled.sum(1))
    h_sampled = joint_entropy(sampled, weights, probs)
    # the rows are rescaled to a maximum of one: the rescaled estimate is off by E log(scale), one constant
    assert torch.allclose(h_sampled - log_scale.mean(), h_exact, atol=0.02)
    assert (h_sampled - h_exact).std() < 0.02 < abs(float(log_scale.mean()))


# --- BADGE ----------------------------------------------------------------------------------------

def test_badge_factorised_distance_equals_explicit_gradient_distance():
    from al_bench.strategies.badge import factorised_sq_dist, grad_factors

    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(6, 4), 1).double()
    emb = torch.randn(6, 5).double()
    a = grad_factors(probs)
    g = torch.stack([torch.kron(a[i], emb[i]) for i in range(6)])  # explicit N x (C D)
    for j in range(6):
        assert torch.allclose(factorised_sq_dist(a, emb, j), (g - g[j]).pow(2).sum(1), atol=1e-10)


def test_badge_starts_at_the_largest_gradient_and_skips_its_copy():
    from al_bench.strategies.badge import Badge

    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])  # 0 confident: zero gradient
    emb = torch.tensor([[1.0, 0.0], [2.0, 0.0], [2.0, 0.0]])     # 2 copies 1
    assert Badge().select(make_ctx(emb=emb, probs=probs), np.arange(3), 2).tolist() == [1, 0]


# --- kmeans, typiclust, probcover, dacs -----------------------------------------------------------

def test_kmeans_takes_the_centre_of_each_blob():
    from al_bench.strategies.kmeans import Kmeans

    pts = blob((0, 0)) + blob((10, 0)) + blob((0, 10))
    emb = torch.tensor(pts)
    picks = Kmeans(n_init=3).select(make_ctx(emb=emb), np.arange(15), 3)
    assert sorted(picks.tolist()) == [0, 5, 10]


def test_typiclust_takes_the_most_typical_point_of_the_uncovered_cluster():
    from al_bench.strategies.typiclust import Typiclust

    pts = blob((0, 0)) + blob((10, 0), offsets=((0.3, 0), (0, 0), (0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1)))
    emb = torch.tensor(pts)  # 0 is labeled: blob 1 is covered, blob 2 (rows 5..10, centre 6) is not
    # raw coordinates: L2 normalisation (the default) would scramble a blob around the origin
    picks = Typiclust(min_cluster_size=2, normalize=False).select(make_ctx(emb=emb, labeled=[0]), np.arange(1, 11), 1)
    assert picks.tolist() == [6]


def test_probcover_greedy_max_coverage_on_a_line():
    from al_bench.strategies.probcover import probcover_select

    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [10.0]]).double()
    none = np.zeros(5, dtype=bool)
    assert probcover_select(x, none, 2, 0.15, np.random.default_rng(0)).tolist() == [1, 3]
    # with 1 labeled, 0..2 are covered already; 3 and 4 cover one each (tie: earlier first)
    labeled = np.array([False, True, False, False, False])
    assert probcover_select(x, labeled, 1, 0.15, np.random.default_rng(0)).tolist() == [3]


def test_probcover_radius_is_the_purity_quantile():
    from al_bench.strategies.probcover import radius_from_purity

    x = torch.tensor([[0.0], [0.1], [0.3], [0.6]]).double()
    pseudo = torch.tensor([0, 0, 1, 1])
    # nearest other-label distances .3, .2, .2, .5: open balls all pure up to delta = .2, half up to .3
    assert radius_from_purity(x, pseudo, 1.0) == pytest.approx(0.2)
    assert radius_from_purity(x, pseudo, 0.75) == pytest.approx(0.2)
    assert radius_from_purity(x, pseudo, 0.5) == pytest.approx(0.3)
    assert radius_from_purity(x, pseudo, 0.25) == pytest.approx(0.5)
    assert radius_from_purity(10 * x, pseudo, 0.25) == 2.0  # capped at the unit sphere's diameter


def test_dacs_budget_goes_to_the_sparse_group():
    from al_bench.strategies.dacs import Dacs, group_budgets

    assert group_budgets(np.array([0.0, 0.0]), np.array([5, 5]), 4, 1.0).tolist() == [2, 2]
    assert group_budgets(np.array([0.0, 10.0]), np.array([1, 5]), 3, 1.0).tolist() == [1, 2]  # surplus moves on
    angles = torch.tensor([0.0, 0.01, -0.01, 0.02, -0.02, 0.03, 2.0, 4.0])  # 6 dense, 2 sparse
    emb = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    picks = Dacs(knn=2, num_groups=4, temperature=0.01).select(make_ctx(emb=emb), np.arange(8), 2)
    assert sorted(picks.tolist()) == [6, 7]


# --- BAIT -----------------------------------------------------------------------------------------

def brute_force_bait(probs, emb, is_labeled, k, lam, oversample, top):
    """BAIT's forward-backward greedy with explicit (C D) x (C D) Fisher matrices; as in the authors' code,
    a labeled point's Fisher weighs 1 / (|L| + k) and a pick's k / (|L| + k)."""
    c, d = probs.shape[1], emb.shape[1]
    scale = int(is_labeled.sum()) + k

    def fisher(i, classes):
        out = torch.zeros(c * d, c * d, dtype=torch.float64)
        for y in probs[i].topk(classes).indices:
            g = torch.kron(probs[i] - nn.functional.one_hot(y, c).double(), emb[i])
            out += probs[i, y] * torch.outer(g, g)
        return out

    f = sum(fisher(i, c) for i in range(len(probs))) / len(probs)
    m = lam * torch.eye(c * d, dtype=torch.float64) + sum(fisher(i, c) for i in np.flatnonzero(is_labeled)) / scale
    unl = np.flatnonzero(~is_labeled)
    chosen: list[int] = []
    for _ in range(oversample * k):
        obj = {i: float(torch.trace(torch.linalg.solve(m + fisher(i, top) * k / scale, f)))
               for i in unl if i not in chosen}
        best = min(obj, key=obj.get)
        chosen.append(best)
        m = m + fisher(best, top) * k / scale
    while len(chosen) > k:
        obj = {i: float(torch.trace(torch.linalg.solve(m - fisher(i, top) * k / scale, f))) for i in chosen}
        worst = min(obj, key=obj.get)
        chosen.remove(worst)
        m = m - fisher(worst, top) * k / scale
    return chosen


@pytest.mark.parametrize("top", [3, 2])
def test_bait_low_rank_greedy_equals_the_explicit_one(top):
    from al_bench.strategies.bait import bait_select

    torch.manual_seed(1)
    probs = torch.softmax(2 * torch.randn(9, 3), 1).double()
    emb = torch.randn(9, 2).double()
    is_labeled = np.array([True, True] + [False] * 7)
    expected = brute_force_bait(probs, emb, is_labeled, 2, 1.0, 2, top)
    got = bait_select(probs, emb, is_labeled, 2, lam=1.0, oversample=2, top_classes=top, proj_dim=32)
    assert got.tolist() == expected


def test_bait_never_picks_a_point_with_zero_fisher_first():
    from al_bench.strategies.bait import bait_select

    probs = torch.tensor([[1.0, 0.0], [0.6, 0.4], [0.5, 0.5]]).double()  # row 0: one-hot, Fisher 0
    emb = torch.tensor([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).double()
    picks = bait_select(probs, emb, np.zeros(3, dtype=bool), 2, oversample=1)
    assert 0 not in picks.tolist()


# --- BalEntAcq, gradnorm, EPIG --------------------------------------------------------------------

def test_beta_entropy_and_balentacq_on_hand_made_samples():
    from scipy.stats import beta as beta_dist

    from al_bench.strategies.balentacq import Balentacq, balentacq, beta_entropy, marginalised_joint_entropy

    for a, b in [(2.0, 3.0), (0.5, 0.5), (10.0, 1.5), (1250.5, 1249.5)]:
        a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        assert abs(float(beta_entropy(a, b)) - beta_dist(float(a), float(b)).entropy()) < 1e-6
    # S = 5 samples of p(class 0). Row 1: m = 0.5, unbiased v = 0.1, so alpha = beta = 0.75 and each class adds
    # m h(Beta(1.75, 0.75)) < 0. Row 2: v = 1e-4, Beta(1250.5, 1249.5), h = -3.19, MJEnt < 0. Row 0: v = 0 (floored
    # at 1e-9), h = -8.9 per class, MJEnt < 0, unless B(alpha + 1, beta) underflows as in the authors' log B.
    mc = torch.tensor([[[0.99, 0.01]] * 5,                                        # confident, agreeing
                       [[q, 1 - q] for q in (0.1, 0.3, 0.5, 0.7, 0.9)],            # wide posterior
                       [[0.49, 0.51], [0.51, 0.49]] * 2 + [[0.5, 0.5]]], dtype=torch.float64)  # uncertain, agreeing
    h = beta_dist(1.75, 0.75).entropy()
    log2 = math.log(2)
    mjent = marginalised_joint_entropy(mc)
    assert abs(float(mjent[1]) - (h + log2)) < 1e-9 and mjent[0] < mjent[2] < 0
    score = balentacq(mc)
    assert abs(float(score[1]) - 2 * log2 / (h + 2 * log2)) < 1e-9  # (H + log 2) / (MJEnt + H), H = log 2
    assert abs(float(balentacq(mc, paper_ratio=True)[1]) - 2 * log2 / (h + log2)) < 1e-9  # (H + log 2) / MJEnt
    assert Balentacq(mc_samples=5).select(make_ctx(mc_probs=mc), np.arange(3), 3).tolist() == [1, 2, 0]
    # the authors' log(B + 1e-32) zeroes row 0's terms: MJEnt = H(Y) and the confident row comes first
    authors = Balentacq(mc_samples=5, log_beta="authors")
    assert authors.select(make_ctx(mc_probs=mc), np.arange(3), 3).tolist() == [0, 1, 2]


def test_gradnorm_closed_forms_equal_autograd_on_the_last_layer():
    from al_bench.strategies.gradnorm import Gradnorm, entropy_gradnorm, expected_gradnorm

    torch.manual_seed(0)
    fc = nn.Linear(4, 3).double()
    emb = torch.randn(5, 4).double()
    probs = torch.softmax(fc(emb), 1).detach()
    want_exp, want_ent = [], []
    for i in range(5):
        def grad_norm(loss):
            gw, gb = torch.autograd.grad(loss, [fc.weight, fc.bias])
            return float(torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum()))
        logits = fc(emb[i:i + 1])
        ce = [nn.functional.cross_entropy(fc(emb[i:i + 1]), torch.tensor([y])) for y in range(3)]
        want_exp.append(sum(float(probs[i, y]) * grad_norm(ce[y]) for y in range(3)))
        p = torch.softmax(logits, 1)
        want_ent.append(grad_norm(-(p * torch.log(p)).sum()))
    # the norm of the whole (W, b) gradient: reduction "total"
    assert torch.allclose(expected_gradnorm(probs, emb, reduction="total"), torch.tensor(want_exp, dtype=torch.float64))
    assert torch.allclose(entropy_gradnorm(probs, emb, reduction="total"), torch.tensor(want_ent, dtype=torch.float64))
    flat = torch.tensor([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33]])
    same = torch.ones(2, 4)
    # the closed form needs no model (the default scope, all parameters, does)
    ctx = make_ctx(emb=same, probs=flat)
    assert Gradnorm("expected", scope="last_layer").select(ctx, np.arange(2), 1).tolist() == [1]


def test_epig_is_the_shared_information_with_the_targets():
    from al_bench.strategies.epig import epig

    reads_w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])   # the label is the weight sample
    ignores_w = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    cands = torch.stack([reads_w, ignores_w, torch.tensor([[1.0, 0.0], [1.0, 0.0]])])
    targets = torch.stack([reads_w, reads_w])
    assert torch.allclose(epig(cands, targets), torch.tensor([math.log(2), 0.0, 0.0], dtype=torch.float64))


# --- models and pools for the input-space strategies ----------------------------------------------

class Flat(Backbone):
    """Embedding = the flattened normalised image; a linear head with given weights."""

    def __init__(self, weight, bias):
        super().__init__(0.0)
        self.fc = nn.Linear(len(weight[0]), len(weight))
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))
            self.fc.bias.copy_(torch.tensor(bias))

    def features(self, x):
        return [x], x.flatten(1)


def tiny_pool(images):
    x = torch.tensor(images, dtype=torch.uint8)
    return Pool(name="t", train_x=x, train_y=torch.zeros(len(x), dtype=torch.long), test_x=x,
                test_y=torch.zeros(len(x), dtype=torch.long), num_classes=2, mean=(0.0,), std=(1.0,))


def model_ctx(model, pool, labeled=()):
    from al_bench.training import predict

    def predict_images(images, mc_samples=0):
        return predict(model, images, pool.mean, pool.std, mc_samples=mc_samples)

    def predictor(indices, mc_samples=0):
        return predict_images(pool.train_x[torch.as_tensor(indices)], mc_samples)

    return SelectionContext(model=model, pool=pool, labeled=np.asarray(labeled, dtype=np.int64),
                            rng=np.random.default_rng(0), device=torch.device("cpu"), predictor=predictor,
                            image_predictor=predict_images)


def test_dfal_ranks_by_distance_to_a_linear_boundary():
    from al_bench.data.augment import Normalize
    from al_bench.strategies.dfal import Dfal, deepfool_norms

    model = Flat([[1.0], [-1.0]], [-0.5, 0.5]).eval()  # boundary at pixel value 0.5 (in [0, 1])
    values = [0, 100, 120, 200, 255]
    pool = tiny_pool([[[[v]]] for v in values])
    assert Dfal().select(model_ctx(model, pool), np.arange(5), 2).tolist() == [2, 1]
    normalize = Normalize((0.0,), (1.0,), "cpu", channels_last=False)
    x = pool.train_x.float() / 255.0
    norms, flipped = deepfool_norms(model, x, lambda z: normalize(z * 255.0), overshoot=0.02)
    assert flipped.all()
    want = torch.tensor([abs(v / 255 - 0.5) for v in values])
    assert torch.allclose(norms.float(), 1.02 * want, atol=1e-3)  # linear model: exact in one step


def test_augmentation_consistency_flags_the_asymmetric_image():
    from al_bench.strategies.augmentation_consistency import AugmentationConsistency, view_disagreement

    model = Flat([[1.0, 0.0, 0.0, -1.0], [-1.0, 0.0, 0.0, 1.0]], [0.0, 0.0]).eval()  # left vs right
    pool = tiny_pool([[[[50], [255], [255], [50]]], [[[255], [0], [0], [0]]], [[[9], [9], [9], [9]]]])
    for measure in ("flip_rate", "kl"):
        strategy = AugmentationConsistency(n_views=16, measure=measure, crop_padding=0)
        assert strategy.select(model_ctx(model, pool), np.arange(3), 1).tolist() == [1]
    clean = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    views = [torch.tensor([[0.8, 0.2], [0.1, 0.9]]), torch.tensor([[0.9, 0.1], [0.9, 0.1]])]
    assert view_disagreement(clean, views, "flip_rate").tolist() == [0.0, 0.5]


def test_alfamix_picks_the_candidate_whose_label_flips():
    from al_bench.strategies.alfamix import Alfamix

    model = SimpleNamespace(fc=nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model.fc.weight.copy_(torch.eye(2))  # logits = embedding
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 0.0], [0.52, 0.48], [0.0, 6.0]])
    probs = torch.softmax(emb, 1)
    pool = SimpleNamespace(train_y=torch.tensor([0, 1, 0, 0, 1]))
    ctx = make_ctx(emb=emb, probs=probs, labeled=[0, 1], model=model, pool=pool)
    assert Alfamix(alpha_cap=0.2).select(ctx, np.arange(2, 5), 1).tolist() == [3]


def test_discriminative_picks_what_the_labeled_set_does_not_cover():
    from al_bench.strategies.discriminative import Discriminative

    gen = torch.Generator().manual_seed(0)
    near = 0.1 * torch.randn(20, 2, generator=gen)
    emb = torch.cat([near, torch.tensor([[5.0, 5.0], [-5.0, -5.0]])])  # rows 0..9 labeled
    strategy = Discriminative(sub_batches=2, hidden=16, layers=1, lr=0.05, epochs=200, batch_size=64)
    picks = strategy.select(make_ctx(emb=emb, labeled=range(10)), np.arange(10, 22), 2)
    assert sorted(picks.tolist()) == [20, 21]


# --- every config, end to end ---------------------------------------------------------------------

# BatchBALD's sampled joint costs N M S C per pick (M = 10,000: half a minute on a CPU); DAL trains its
# discriminator for up to 1000 epochs per round on embeddings outside its table (two minutes); TA-VAAL trains
# its VAE for 100 epochs of (labeled + candidates) at selection (over two minutes)
FAST = {"batchbald": ["strategy.num_joint_samples=256"], "discriminative": ["strategy.epochs=20"],
        "ta_vaal": ["strategy.vae_epochs=1.0"]}


STRATEGY_CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "strategy").glob("*.yaml"))


@pytest.mark.parametrize("word", STRATEGY_CONFIGS)
def test_every_strategy_config_runs_two_cycles(tmp_path, word):
    """Every conf/strategy/*.yaml, end to end: a new strategy is covered without editing a list."""
    from conftest import SMOKE, run_al

    metrics = run_al(SMOKE + [f"strategy={word}", "model.dropout=0.3"] + FAST.get(word, []), tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and [m["n_labeled"] for m in metrics] == [50, 100]
    assert [json.loads(line)["n_labeled"] for line in lines] == [50, 100]
    labeled = np.load(tmp_path / "labeled" / "cycle_01.npy")
    assert len(np.unique(labeled)) == 100
