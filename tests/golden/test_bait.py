"""BAIT against its authors' code.

Reference: JordanAsh/badge@a2d18acd372cf0f61d9e75bfb0c879c107fbf9f6, query_strategies/bait_sampling.py,
`BaitSampling.query(n=k)` (which calls `Strategy.get_exp_grad_embedding` in query_strategies/strategy.py
and then `select` with over_sample = 2), run on CPU (`Tensor.cuda` patched to the identity) with
lamb = `lam` below. Its model was a stub returning (logits, embedding) rows of the input below for each
index; Y = arange(n) % C (only the class count is read); idxs_lb = the first `n_lab` rows; loader
batch size 7. The reference ran in its own float32 and, separately, with float64 tensors: the same picks
both times. al-bench is exact for these settings (top_classes = C, proj_dim = D).

Input: torch.manual_seed(seed); logits = 2 * torch.randn(n, C); emb = torch.randn(n, D) (float32, CPU);
probs = softmax(logits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies.bait import Bait, bait_select
from al_bench.strategies.base import SelectionContext

# (n, C, D, n_lab, k, lam, seed) -> the reference's picks (pool indices, in its order)
CASES = [
    ((30, 3, 4, 4, 6, 1.0, 0), [16, 29, 9, 8, 27, 12]),
    ((40, 4, 3, 0, 5, 0.1, 1), [18, 12, 25, 9, 35]),
    ((36, 4, 5, 6, 5, 1.0, 2), [20, 24, 22, 30, 31]),
    ((30, 3, 4, 4, 6, 0.01, 0), [29, 18, 8, 12, 9, 27]),
]


def make_input(n, c, d, seed):
    torch.manual_seed(seed)
    logits = 2 * torch.randn(n, c)
    emb = torch.randn(n, d)
    return torch.softmax(logits, 1), emb


@pytest.mark.parametrize("case,expected", CASES)
def test_bait_picks_equal_the_authors_code(case, expected):
    n, c, d, n_lab, k, lam, seed = case
    probs, emb = make_input(n, c, d, seed)
    is_labeled = np.arange(n) < n_lab
    got = bait_select(probs, emb, is_labeled, k, lam=lam, oversample=2, top_classes=c, proj_dim=d)
    assert got.tolist() == expected


@pytest.mark.parametrize("case,expected", CASES[:2])
def test_bait_strategy_select_returns_the_same_pool_indices(case, expected):
    n, c, d, n_lab, k, lam, seed = case
    probs, emb = make_input(n, c, d, seed)
    ctx = SelectionContext(model=None, pool=None, labeled=np.arange(n_lab), rng=np.random.default_rng(0),
                           device=torch.device("cpu"),
                           predictor=lambda idx, mc_samples=0: {"probs": probs[idx], "embedding": emb[idx]})
    got = Bait(lam=lam, oversample=2, top_classes=c, proj_dim=d).select(ctx, np.arange(n_lab, n), k)
    assert got.tolist() == expected


@pytest.mark.parametrize("case,_", CASES[:2])
def test_bait_w_chunks_do_not_change_the_picks(case, _):
    n, c, d, n_lab, k, lam, seed = case
    probs, emb = make_input(n, c, d, seed)
    is_labeled = np.arange(n) < n_lab
    picks = [bait_select(probs, emb, is_labeled, k, lam=lam, top_classes=c, proj_dim=d, chunk=chunk).tolist()
             for chunk in (1, 7, 1024)]
    assert picks[0] == picks[1] == picks[2]

