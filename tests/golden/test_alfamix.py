"""ALFA-Mix against its authors' code.

Reference: AminParvaneh/alpha_mix_active_learning @ b79d95458081efff6d9a3d17d50cf6b4fae6f98c,
query_strategies/alpha_mix_sampling.py, AlphaMixSampling.query(n) (scikit-learn 1.9.1, torch 2.14.1, CPU),
run on the inputs of `rand_input` / `clustered_input` below: 6 labeled embeddings (labels 0, 0, 1, 1, 0, 1,
so class 2 has none and takes the mean of all as anchor), 40 unlabeled ones, D = 6, C = 3, the head
logits = z W^T + b standing in for model.clf(z, embedding=True), probs its softmax. Settings: their
argparse defaults with `--alpha_opt` (alpha_cap 0.03125, 5 iterations, lr 0.1, l2 coef 0.01) for
`learned`, `--alpha_closed_form_approx --alpha_cap 0.2` for `closed_form`, n_label 3. Their random
start of the learned alpha (generate_alpha, torch.normal) was replaced by clamp(eps U, 1e-8, eps) with
the fixed U below, on both sides; their KMeans was given random_state=0 (n_init 10) for the pinned
cluster labels, and for the pinned pick sets the picks were the same for random_state 0..11.

Agreement: candidate sets and the eps where the search stopped identical in all cases below; per-cluster
picks identical in order given their cluster labels; pick sets identical on the clustered input.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from al_bench.strategies.alfamix import DEFAULT_CAP, Alfamix, candidate_set, class_anchors, cluster_picks
from al_bench.strategies.base import SelectionContext

LABELS = torch.tensor([0, 0, 1, 1, 0, 1])


def rand_input():
    torch.manual_seed(0)
    lab, unl = torch.randn(6, 6), torch.randn(40, 6)
    w, b = torch.randn(3, 6), 0.1 * torch.randn(3)
    return lab, unl, w, b, torch.rand(40, 6)


def clustered_input():
    """Eight tight groups of five unlabeled points, so that k-means has one clear answer."""
    torch.manual_seed(0)
    lab, centres = torch.randn(6, 6), 1.5 * torch.randn(8, 6)
    unl = (centres[:, None, :] + 0.05 * torch.randn(8, 5, 6)).reshape(-1, 6)
    w, b = torch.randn(3, 6), 0.1 * torch.randn(3)
    return lab, unl, w, b, torch.rand(40, 6)


def linear(w, b):
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head


def flipped(make, method, k):
    lab, unl, w, b, u = make()
    head = linear(w, b)
    probs = torch.softmax(head(unl), 1).detach()
    init = lambda eps, shape: (eps * u).clamp(1e-8, eps)  # noqa: E731
    mask, eps = candidate_set(head, unl, probs, class_anchors(lab, LABELS, 3), k, method, DEFAULT_CAP[method], init)
    return np.flatnonzero(mask.numpy()).tolist(), eps


# (input, method, k) -> (their candidate positions among the 40 unlabeled, their last alpha_cap)
CANDIDATES = {
    ("rand", "closed_form", 5): ([0, 2, 6, 7, 8, 11, 18, 24, 25, 28, 30, 31, 33, 37], 0.2),
    ("rand", "learned", 3): ([2, 7, 8, 11, 18, 24, 37], 0.09375),
    ("rand", "learned", 8): ([2, 7, 8, 11, 18, 24, 28, 31, 37], 0.125),
    ("clustered", "learned", 3): ([0, 1, 2, 4, 23], 0.0625),
    ("clustered", "closed_form", 3): ([0, 1, 2, 3, 4, 20, 21, 22, 23, 24, 30, 31, 32, 33, 34], 0.2),
}


@pytest.mark.parametrize("case", sorted(CANDIDATES))
def test_candidate_set_and_eps_growth_match_the_authors(case):
    make = {"rand": rand_input, "clustered": clustered_input}[case[0]]
    cands, eps = flipped(make, case[1], case[2])
    assert cands == CANDIDATES[case][0]
    assert eps == pytest.approx(CANDIDATES[case][1])


def test_per_cluster_pick_given_their_cluster_labels():
    """Their KMeans(random_state=0) labels of the normalised candidates, and their picks (positions)."""
    cases = [("closed_form", 3, [1, 2, 0, 2, 2, 0, 1, 0, 1, 0, 2, 1, 1, 0], [7, 8, 1]),
             ("learned", 3, [1, 1, 1, 0, 2, 0, 0], [5, 0, 4])]  # no two-member cluster: its two are tied
    unl = rand_input()[1]
    for method, k, labels, want in cases:
        cands, _ = flipped(rand_input, method, k)
        feats = F.normalize(unl[cands].double(), dim=1)
        labels = torch.tensor(labels)
        centres = torch.stack([feats[labels == c].mean(0) for c in range(k)])
        assert cluster_picks(feats, labels, centres).tolist() == want


class FixedStart(Alfamix):
    def __init__(self, u, **kw):
        super().__init__(**kw)
        self.u = u

    def alpha_init(self, ctx, eps, shape):
        return (eps * self.u).clamp(1e-8, eps)


@pytest.mark.parametrize("method,k,want", [("closed_form", 3, [2, 20, 30]), ("closed_form", 5, [0, 2, 3, 20, 30]),
                                           ("learned", 3, [0, 2, 23]), ("learned", 5, [0, 1, 3, 4, 20])])
def test_select_picks_what_the_authors_pick(method, k, want):
    lab, unl, w, b, u = clustered_input()
    head = linear(w, b)
    emb = torch.cat([lab, unl])

    def predictor(indices, mc_samples=0):
        idx = torch.as_tensor(np.asarray(indices))
        return {"embedding": emb[idx], "probs": torch.softmax(head(emb[idx]), 1).detach()}

    pool = SimpleNamespace(train_y=torch.cat([LABELS, torch.zeros(40, dtype=torch.long)]))
    for seed in range(3):
        ctx = SelectionContext(model=SimpleNamespace(fc=head), pool=pool, labeled=np.arange(6),
                               rng=np.random.default_rng(seed), device=torch.device("cpu"), predictor=predictor)
        picks = FixedStart(u, alpha_method=method).select(ctx, np.arange(6, 46), k)
        assert sorted((picks - 6).tolist()) == want
