"""spn_entropy / spn_var_ratio (Khosravani & Zilles, TMLR 2024, arXiv:2206.09798).

No authors' code: the paper's arXiv and OpenReview (TMLR) pages link none, and GitHub searches
(find_repos "khosravani", code searches for SPN + active learning + variation ratio) found none. So:
- golden: SPFlow's likelihood and our conditional p(y | x) on a tiny hand-built SPN (two classes, each
  a 2-component mixture of product Gaussians over 2 features) against a brute-force evaluation of the
  same densities with scipy.stats.norm, and against the conditional of the whole joint SPN (root sum
  over [indicator(y = c) x class SPN]) obtained by marginalising y (NaN evidence) in SPFlow;
- known answers: the conditional of an SPN learned on three well-separated labeled clusters is
  confident on the clusters and split between the two classes mid-way, so the mid-way candidates are
  picked; with identical class SPNs p(y | x) = p(y), so the variation ratio is 1 - max p(y) and the
  entropy H(p(y)).
Key-term ablation tried: class_posterior returning the root weights p(y) for every row (the marginal
in place of the conditional) fails test_midway_candidates_are_picked.

Needs the optional extra al-bench[spn] (spflow); skipped without it.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext

needs_spflow = pytest.mark.skipif(importlib.util.find_spec("spflow") is None,
                                  reason="spflow not installed (optional extra: pip install 'al-bench[spn]')")

# the hand-built SPN: class c's density is sum_k W[c, k] prod_j N(x_j; LOC[c, k, j], SCALE[c, k, j])
LOC = torch.tensor([[[0.0, 1.0], [2.0, -1.0]], [[1.0, 0.0], [-1.0, 2.0]]])  # (C, K, D)
SCALE = torch.tensor([[[1.0, 0.5], [0.7, 1.2]], [[0.8, 1.0], [1.0, 0.6]]])
W = torch.tensor([[0.3, 0.7], [0.6, 0.4]])
PRIOR = torch.tensor([0.25, 0.75])
X = torch.tensor([[0.0, 0.0], [1.5, -0.5], [-1.0, 2.0], [0.5, 0.8], [3.0, 1.0]])


def class_spn(c, loc=LOC, scale=SCALE, w=W):
    from spflow.meta.data.scope import Scope
    from spflow.modules.leaves import Normal
    from spflow.modules.products import Product
    from spflow.modules.sums import Sum

    leaf = Normal(scope=Scope([0, 1]), out_channels=2, loc=loc[c].T.contiguous().unsqueeze(-1),
                  scale=scale[c].T.contiguous().unsqueeze(-1))  # (features, channels = components, repetitions)
    return Sum(inputs=Product(inputs=leaf), weights=w[c].view(1, 2, 1, 1))


def brute_force_log_density(x, c):
    from scipy.stats import norm

    x = x.numpy().astype(np.float64)
    dens = sum(float(W[c, k]) * norm.pdf(x, LOC[c, k].numpy(), SCALE[c, k].numpy()).prod(axis=1) for k in range(2))
    return np.log(dens)


@needs_spflow
def test_conditional_of_a_hand_built_spn_equals_brute_force():
    from al_bench.strategies.common.spn import class_log_likelihoods, class_posterior

    spns = [class_spn(0), class_spn(1)]
    ll = class_log_likelihoods(spns, X).numpy()
    want_ll = np.stack([brute_force_log_density(X, c) for c in range(2)], axis=1)
    np.testing.assert_allclose(ll, want_ll, rtol=0, atol=1e-5)  # SPFlow evaluates in float32
    joint = want_ll + np.log(PRIOR.numpy())
    want = np.exp(joint - np.logaddexp(joint[:, :1], joint[:, 1:]))
    got = class_posterior(spns, PRIOR.log(), X).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert got[:, 0].min() < 0.05 and got[:, 0].max() > 0.5  # the rows really differ in class


@needs_spflow
def test_conditional_equals_the_joint_spn_conditional_by_marginalising_y():
    """p(y | x) = p(x, y) / p(x) on the joint SPN over [x, y], p(x) by NaN (marginalised) evidence."""
    from spflow.meta.data.scope import Scope
    from spflow.modules.leaves import Categorical
    from spflow.modules.products import Product
    from spflow.modules.sums import Sum

    from al_bench.strategies.common.spn import class_posterior

    spns = [class_spn(0), class_spn(1)]
    branches = [Product([Categorical(scope=Scope([2]), K=2,
                                     probs=torch.eye(2)[c].clamp_min(1e-12).view(1, 1, 1, 2)), spns[c]])
                for c in range(2)]
    root = Sum(inputs=branches, weights=PRIOR.view(1, 2, 1, 1))
    evidence = torch.cat([X, torch.full((len(X), 1), float("nan"))], dim=1)
    with torch.no_grad():
        log_px = root.log_likelihood(evidence).reshape(-1)
        cond = []
        for c in range(2):
            xy = evidence.clone()
            xy[:, 2] = c
            cond.append((root.log_likelihood(xy).reshape(-1) - log_px).exp())
    want = torch.stack(cond, dim=1).double()
    assert torch.allclose(class_posterior(spns, PRIOR.log(), X), want, atol=1e-5)


@needs_spflow
def test_identical_class_spns_give_the_prior_and_its_var_ratio_and_entropy():
    from al_bench.strategies.common.spn import class_posterior
    from al_bench.strategies.spn_entropy import SpnEntropy
    from al_bench.strategies.spn_var_ratio import SpnVarRatio

    prior = torch.tensor([0.2, 0.8])
    p = class_posterior([class_spn(0), class_spn(0)], prior.log(), X)
    assert torch.allclose(p, prior.double().expand_as(p), atol=1e-6)
    # the scores are log(1 - max p) and log H
    assert torch.allclose(SpnVarRatio().score(p.log()).exp(), torch.full((len(X),), 0.2, dtype=torch.float64),
                          atol=1e-6)
    h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    assert torch.allclose(SpnEntropy().score(p.log()).exp(), torch.full((len(X),), h, dtype=torch.float64),
                          atol=1e-6)


@needs_spflow
def test_var_ratio_score_is_one_minus_the_modal_probability():
    from al_bench.strategies.spn_var_ratio import SpnVarRatio

    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]], dtype=torch.float64)
    assert torch.allclose(SpnVarRatio().score(p.log()).exp(), torch.tensor([0.5, 0.2, 2 / 3], dtype=torch.float64))


def test_log_scores_rank_posteriors_that_are_one_hot_in_floating_point():
    """log p(y | x) 800-1000 nats apart: p is exactly one-hot in float64 (H = 0, 1 - max p = 0 for all
    rows), yet the log scores keep the order; a class of weight 0 (log p = -inf) adds nothing."""
    from al_bench.strategies.common.spn import log_entropy, log_one_minus_max
    from al_bench.strategies.common.uncertainty import entropy

    log_p = torch.tensor([[0.0, -900.0, -torch.inf], [-1000.0, 0.0, -torch.inf], [0.0, -800.0, -torch.inf],
                          [0.0, -torch.inf, -torch.inf]], dtype=torch.float64)
    assert (entropy(log_p.exp()) == 0).all() and (1 - log_p.exp().max(1).values == 0).all()
    assert torch.allclose(log_one_minus_max(log_p)[:3], torch.tensor([-900.0, -1000.0, -800.0], dtype=torch.float64))
    h = log_entropy(log_p)
    assert torch.allclose(h[:3], torch.tensor([-900 + math.log(900), -1000 + math.log(1000), -800 + math.log(800)],
                                              dtype=torch.float64))
    assert h[3] == -torch.inf and log_one_minus_max(log_p)[3] == -torch.inf
    p = torch.tensor([[0.5, 0.5, 0.0], [0.7, 0.2, 0.1]], dtype=torch.float64)
    assert torch.allclose(log_entropy(p.log()).exp(), entropy(p))


# --- the selection on hand-made features ---------------------------------------------------------

CENTRES = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])


def cluster_context(seed=0):
    """30 labeled rows per class around three far-apart centres (D = 3); 12 candidates: 3 at each
    centre, then 2 mid-way between classes 0 and 1 and 1 mid-way between classes 1 and 2."""
    g = torch.Generator().manual_seed(11)
    y_lab = torch.arange(3).repeat_interleave(30)
    x_lab = CENTRES[y_lab] + torch.randn(90, 3, generator=g)
    x_near = CENTRES.repeat_interleave(3, dim=0) + 0.3 * torch.randn(9, 3, generator=g)
    x_mid = torch.tensor([[5.0, 0.2, 0.0], [5.0, -0.3, 0.1], [5.0, 5.0, 0.0]])
    emb = torch.cat([x_lab, x_near, x_mid]).double()
    train_y = torch.cat([y_lab, torch.full((12,), -1)])  # candidates' labels are never read

    def predictor(indices, mc_samples=0):
        return {"embedding": emb[torch.as_tensor(np.asarray(indices))]}

    pool = SimpleNamespace(train_y=train_y, num_classes=3)
    return SelectionContext(model=None, pool=pool, labeled=np.arange(90), rng=np.random.default_rng(seed),
                            device=torch.device("cpu"), predictor=predictor)


CANDIDATES = np.arange(90, 102)
NEAR_CLASS = np.arange(3).repeat(3)


@needs_spflow
def test_spn_conditional_is_confident_on_the_clusters_and_split_mid_way():
    from al_bench.strategies.spn_entropy import SpnEntropy

    p = SpnEntropy(pca_dims=None).log_probs(cluster_context(), CANDIDATES).exp()
    assert p.argmax(1)[:9].tolist() == NEAR_CLASS.tolist() and p[:9].max(1).values.min() > 0.99
    assert p[9:11, :2].min() > 0.02 and p[9:11, 2].max() < 1e-3  # between classes 0 and 1
    assert p[11].min() > 0.02  # (5, 5, 0) is as far from each of the three centres


@needs_spflow
@pytest.mark.parametrize("word", ["spn_entropy", "spn_var_ratio"])
@pytest.mark.parametrize("pca_dims", [None, 2])
def test_midway_candidates_are_picked(word, pca_dims):
    from al_bench.strategies.spn_entropy import SpnEntropy
    from al_bench.strategies.spn_var_ratio import SpnVarRatio

    cls = SpnEntropy if word == "spn_entropy" else SpnVarRatio
    for seed in range(3):
        picks = cls(pca_dims=pca_dims).select(cluster_context(seed), CANDIDATES, 3)
        assert sorted(picks.tolist()) == [99, 100, 101]


@needs_spflow
def test_selection_is_a_function_of_the_seed():
    from al_bench.strategies.spn_entropy import SpnEntropy

    a = SpnEntropy(pca_dims=2).log_probs(cluster_context(5), CANDIDATES)
    b = SpnEntropy(pca_dims=2).log_probs(cluster_context(5), CANDIDATES)
    assert torch.equal(a, b)


@needs_spflow
def test_a_class_with_one_labeled_row_and_an_unseen_class():
    """One labeled row gives Gaussian leaves of SPFlow's floor scale; a class without labeled rows
    gets weight 0: p(y = unseen | x) = 0 and the rows stay finite."""
    from al_bench.strategies.common.spn import spn_log_probs

    g = torch.Generator().manual_seed(3)
    emb_lab = torch.cat([CENTRES[:2].repeat_interleave(20, 0) + torch.randn(40, 3, generator=g), CENTRES[2:]])
    y_lab = torch.tensor([0] * 20 + [1] * 20 + [2])
    p = spn_log_probs(emb_lab, y_lab, CENTRES + 0.1, 4, np.random.default_rng(0), None, 100, 0.3).exp()
    assert torch.isfinite(p).all() and torch.allclose(p.sum(1), torch.ones(3, dtype=torch.float64))
    assert (p[:, 3] == 0).all() and p[:2].argmax(1).tolist() == [0, 1]


@needs_spflow
def test_refuses_an_empty_labeled_set():
    from al_bench.strategies.spn_entropy import SpnEntropy

    ctx = cluster_context()
    ctx.labeled = np.zeros(0, dtype=np.int64)
    with pytest.raises(ConfigError, match="labeled set"):
        SpnEntropy().select(ctx, CANDIDATES, 2)


def test_refuses_clearly_without_the_spn_library(monkeypatch):
    from al_bench.strategies.spn_entropy import SpnEntropy
    from al_bench.strategies.spn_var_ratio import SpnVarRatio

    monkeypatch.setitem(sys.modules, "spflow", None)  # `import spflow` raises ImportError
    for cls in (SpnEntropy, SpnVarRatio):
        with pytest.raises(ConfigError, match=r"al-bench\[spn\]"):
            cls()


@needs_spflow
def test_a_slice_under_min_instances_slice_is_a_product_of_univariate_gaussians():
    """A class of fewer than min_instances_slice rows gets p(x | c) = prod_j N(x_j; mean_j, std_j),
    std the bias-corrected (N - 1) standard deviation: with 4 rows and d = 10 too (SPFlow's leaf over
    F features would divide by N - F < 0 and floor the scale to 1e-8), and where SPFlow's RDC fails
    (a quickstart-like labeled set, 4 rows a class)."""
    from scipy.stats import norm

    from al_bench.strategies.common.spn import class_log_likelihoods, fit_class_spns, spn_log_probs

    g = torch.Generator().manual_seed(4)
    for n, d in ((60, 4), (4, 10)):
        z = torch.randn(n, d, generator=g) + torch.arange(d)
        spns, _ = fit_class_spns(z, torch.zeros(n), 1, np.random.default_rng(0))
        x = torch.randn(20, d, generator=g) + torch.arange(d)
        zd = z.double().numpy()
        want = norm.logpdf(x.double().numpy(), zd.mean(0), zd.std(0, ddof=1)).sum(1)
        np.testing.assert_allclose(class_log_likelihoods(spns, x)[:, 0].numpy(), want, rtol=1e-5, atol=1e-4)
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        emb = torch.relu(torch.randn(40, 64, generator=g))
        log_p = spn_log_probs(emb, torch.arange(10).repeat(4), torch.randn(50, 64, generator=g), 10,
                              np.random.default_rng(seed), 10, 100, 0.3)
        assert torch.allclose(torch.logsumexp(log_p, 1), torch.zeros(50, dtype=torch.float64), atol=1e-9)
