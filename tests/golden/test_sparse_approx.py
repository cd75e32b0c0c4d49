"""Sparse approximation (arXiv:2211.00246): the IHT solver against the same authors' IHT code, and the
rule on hand-made inputs whose answer is known in advance.

No public code of the paper itself was found (GitHub searched by title, authors' names and "sparse
approximation active learning"; the paper's text was not reachable offline). Its IHT solver is pinned
against the accelerated IHT of two of its authors' coreset toolbox: jackyzyb/bayesian-coresets-optimization
@ c5b107e3e8df598deca53b084d4f3ffa42a14347, IHT_toolbox/accelerated_iht.py, `a_iht_ii(y, A, K)` with its
defaults (tol 1e-5, max_iter_num 300, L None: nonnegative, K-sparse), called with A = V^T, y = V.sum(0)
as an (m, 1) column, numpy float64 on CPU. Input: torch.manual_seed(seed);
V = torch.randn(n, m, dtype=float64).abs() + 0.1 * torch.randn(n, m, dtype=float64). Pinned: the support
and its weights (to 1e-4: both stop once an iteration changes w by less than 1e-5 relative).

Hand-made: a pool of k clusters of near-copies has one optimum, one point per cluster weighted by the
cluster's size, which reproduces the pool's loss; greedy finds it for unequal clusters and both solvers on
a small case; A-IHT, like the reference, can be trapped in one large cluster (tested as the reference's
behaviour); the loss features are the expected cross-entropy under the model's predictions at the
sampled last layers, centred at the trained one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from al_bench.strategies.sparse_approx import SparseApprox, greedy, iht, loss_features, objective

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_strategies_zoo import make_ctx  # noqa: E402

SIZES = [1, 3, 7, 12, 20]
SMALL = [1, 2, 3, 4, 5]

# (seed, n, m, k) -> the reference's support (sorted) and weights
REFERENCE = [
    ((0, 12, 5, 3), [1, 7, 9], [4.390153, 4.26891, 0.572463]),
    ((1, 30, 8, 6), [2, 3, 5, 12, 15, 28], [3.738216, 2.105258, 3.009597, 4.36461, 3.368393, 4.624231]),
    ((2, 40, 16, 10), [9, 16, 17, 19, 20, 27, 30, 34, 35, 37],
     [1.844581, 6.395586, 3.256795, 6.25407, 3.631976, 2.687703, 1.619983, 1.513487, 4.939959, 2.650624]),
]


def planted(sizes=SIZES, seed: int = 0, m: int = 12, noise: float = 1e-3):
    """Rows that are len(sizes) clusters of near-copies of generic directions; labels = cluster."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(len(sizes), m, generator=g, dtype=torch.float64)
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    v = dirs[labels] + noise * torch.randn(len(labels), m, generator=g, dtype=torch.float64)
    perm = torch.randperm(len(labels), generator=g)
    return v[perm], labels[perm]


@pytest.mark.parametrize(("case", "support", "weights"), REFERENCE)
def test_iht_matches_the_authors_accelerated_iht(case, support, weights):
    seed, n, m, k = case
    torch.manual_seed(seed)
    v = torch.randn(n, m, dtype=torch.float64).abs() + 0.1 * torch.randn(n, m, dtype=torch.float64)
    picks, w = iht(v, k)
    order = np.argsort(picks)
    assert picks[order].tolist() == support
    assert w.numpy()[order] == pytest.approx(weights, abs=1e-4)  # both stop at a relative change of 1e-5


def check_planted(solver, sizes):
    v, labels = planted(sizes)
    k = len(sizes)
    picks, w = greedy(v, k) if solver == "greedy" else iht(v, k)
    assert sorted(labels[picks].tolist()) == list(range(k))  # one per cluster
    got = dict(zip(labels[picks].tolist(), w.tolist()))
    assert [got[c] for c in range(k)] == pytest.approx(sizes, rel=0.02)
    # the weighted subset reproduces the pool's loss vector
    assert objective(v, picks, w) < 1e-4 * float(v.sum(0).norm() ** 2)


def test_greedy_recovers_planted_clusters_of_unequal_sizes():
    check_planted("greedy", SIZES)


@pytest.mark.parametrize("solver", ["greedy", "iht"])
def test_both_solvers_reach_the_known_optimum_on_a_small_case(solver):
    check_planted(solver, SMALL)


def test_iht_like_the_reference_can_stay_in_the_largest_cluster():
    """A-IHT's first support is the k largest correlations with the pool, all near-copies of the
    largest cluster here; the reference's a_iht_ii on this input also returns 5 points of cluster 4."""
    v, labels = planted(SIZES)
    picks, _ = iht(v, len(SIZES))
    assert labels[picks].tolist() == [4] * len(SIZES)


def test_loss_features_are_centred_expected_cross_entropy():
    g = torch.Generator().manual_seed(0)
    n, c, d, m, sigma = 6, 3, 4, 5, 0.7
    logits, emb = torch.randn(n, c, generator=g), torch.randn(n, d, generator=g)
    probs = logits.softmax(1)
    v = loss_features(logits, probs, emb, m, sigma, torch.Generator().manual_seed(5), block=m)
    # the same draws, the layer perturbed explicitly, the loss summed over labels weighted by p
    gen = torch.Generator().manual_seed(5)
    scale = sigma / float(np.sqrt(float((emb * emb).sum(1).mean()) + 1.0))
    dw = (torch.randn((m * c, d), generator=gen) * scale).view(m, c, d)
    db = (torch.randn((m * c,), generator=gen) * scale).view(m, c)
    for j in range(m):
        z = logits + emb @ dw[j].T + db[j]
        want = -(probs * z.log_softmax(1)).sum(1) + (probs * logits.log_softmax(1)).sum(1)
        assert torch.allclose(v[:, j], want / np.sqrt(m), atol=1e-5)


def test_select_takes_one_point_per_cluster_of_copies(solver="greedy", sizes=SIZES):
    """End to end through the strategy: images whose predictions are exact copies within a cluster."""
    g = torch.Generator().manual_seed(1)
    centres_e, centres_z = torch.randn(len(sizes), 8, generator=g), 2 * torch.randn(len(sizes), 4, generator=g)
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    ctx = make_ctx(emb=centres_e[labels], probs=centres_z[labels].softmax(1).double())
    strat = SparseApprox(solver=solver, num_samples=64)
    picks = strat.select(ctx, np.arange(len(labels)), len(sizes))
    assert sorted(labels[picks].tolist()) == list(range(len(sizes)))
