"""Batch-BALanCe's screened greedy (exact scores only for the rows whose upper bound can reach the best,
per-pair lower bounds carried across steps by min_j G_jk / G'_jk, the product skipped once G underflows)
against a straightforward version that computes every row's score at every step with the full products,
as the strategy did before (same arithmetic per row, so the scores are compared bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies.balance import pair_ratio
from al_bench.strategies.batch_balance import _ratio, batch_balance_batch
from al_bench.strategies.common.blocks import single_thread


def straightforward(mc_probs, split, k, m, sampling_index, generator, dtype=torch.float32, chunk=1024):
    """Every step: G from all M configurations, then every candidate's score. Returns the picks, their
    scores and how many steps had G = 0 (every a_k(m) rounded to 0)."""
    probs = mc_probs.double()
    n, s2, c = probs.shape
    kk = s2 // 2
    h = float(split.sum())
    pmax, psum = probs.amax(dim=2), probs.sum(dim=2)
    pt = probs.transpose(1, 2).to(dtype).contiguous()
    cols = torch.nonzero(split).flatten()
    pair_cols, n_cut = torch.cat([cols, cols + kk]), len(cols)
    cut = pair_ratio(probs)[:, cols].transpose(1, 2).to(dtype).contiguous()
    available = torch.ones(n, dtype=torch.bool)
    exact = torch.ones((s2, 1), dtype=torch.float64)
    log_max = torch.zeros(s2, dtype=torch.float64)
    log_joint = None
    picks, scores, zero_steps = [], [], 0

    def draw(i):
        mean = probs[i].mean(dim=0)
        labels = torch.multinomial(mean / mean.sum(), m, replacement=True, generator=generator)
        return torch.log(probs[i].T)[labels]

    for step in range(k):
        if step < sampling_index:
            ratio = torch.exp(torch.log(exact) - log_max[:, None])
            a = (ratio[:kk] * ratio[kk:])[cols]
            w = exact.sum(dim=1) / s2
            g = (exact @ a.T / s2).to(dtype)
        else:
            if log_joint is None:
                log_joint = torch.zeros((m, s2), dtype=torch.float64)
                for i in picks:
                    log_joint += draw(i)
            q = torch.softmax(log_joint, dim=1)
            la = log_joint[:, pair_cols] - log_max[pair_cols]
            a = torch.exp(la[:, :n_cut] + la[:, n_cut:])
            w = q.mean(dim=0)
            g = q.to(dtype).T @ a.to(dtype) / m
        zero_steps += int(not g.any())
        score = torch.empty(n, dtype=torch.float64)
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            t = (pt[rows].reshape(-1, s2) @ g).view(-1, c, n_cut)
            second = (t * cut[rows]).sum(dim=(1, 2)).double()
            score[rows] = (h * (psum[rows] @ w) - second) / kk
        score[~available] = -float("inf")
        i = int(torch.argmax(score))
        picks.append(i)
        scores.append(float(score[i]))
        available[i] = False
        log_max += torch.log(pmax[i])
        if step + 1 < sampling_index:
            exact = (exact[:, :, None] * probs[i][:, None, :]).reshape(s2, -1)
        elif log_joint is not None and step + 1 < k:
            log_joint += draw(i)
    return picks, scores, zero_steps


def make_probs(seed, n, k, c):
    torch.manual_seed(seed)
    base = 2 * torch.randn(n, 1, c)
    scale = torch.linspace(0.3, 3.0, k).repeat(2)
    return torch.softmax(base + scale[None, :, None] * torch.randn(n, 2 * k, c), dim=2)


# (seed, N, K, C, k, M, sampling_index, split pattern, dtype)
CASES = [
    (0, 300, 8, 10, 90, 400, 2, "all", torch.float32),  # long enough for G to underflow
    (1, 257, 6, 4, 40, 300, 3, "some", torch.float32),  # some pairs not split; N not a multiple of the chunk
    (2, 200, 5, 3, 30, 200, 0, "some", torch.float64),  # sampled from the first pick, in float64
    (3, 150, 4, 5, 25, 1000, 1, "all", torch.float32),
]


@pytest.mark.parametrize("case", CASES)
def test_screened_greedy_equals_the_straightforward_one(case):
    seed, n, kk, c, k, m, si, pattern, dtype = case
    probs = make_probs(seed, n, kk, c)
    split = torch.ones(kk, dtype=torch.float64)
    if pattern == "some":
        split[::3] = 0.0
    with single_thread():
        want, want_scores, zero_steps = straightforward(probs, split, k, m, si, torch.Generator().manual_seed(seed),
                                                        dtype, chunk=64)
    for screen in (True, False):
        got, got_scores = batch_balance_batch(probs, split, k, m, si, torch.Generator().manual_seed(seed), dtype,
                                              chunk=64, screen=screen, probe=8)
        assert got.tolist() == want
        assert got_scores.tolist() == want_scores  # bit for bit
    if case is CASES[0]:
        assert 0 < zero_steps < k - 10  # the underflow shortcut ran, for many steps


def test_screening_skips_most_rows_once_scores_settle():
    """The bound must do its job: after the first steps only a few rows per step get exact scores."""
    import al_bench.strategies.batch_balance as bb

    probs = make_probs(0, 300, 8, 10)
    split = torch.ones(8, dtype=torch.float64)
    rows = []
    evaluate = bb._evaluate

    def counting(pt, cut, g, first, low, sel, *args):
        rows.append(pt.shape[0] if sel is None else len(sel))
        return evaluate(pt, cut, g, first, low, sel, *args)

    bb._evaluate = counting
    try:
        batch_balance_batch(probs, split, 60, 400, 2, torch.Generator().manual_seed(0), chunk=64, probe=8)
    finally:
        bb._evaluate = evaluate
    assert sum(rows) < 0.5 * 300 * 60


def test_ratio_bounds_every_nonnegative_bilinear_form():
    torch.manual_seed(0)
    g_prev = torch.rand(12, 5)
    g_prev[3, 2] = 0.0  # an entry without a ratio
    g = g_prev * torch.rand(12, 5) + torch.rand(12, 5) * 0.1
    g[:, 4] = 0.0  # a pair whose G vanished
    r = _ratio(g, g_prev)
    assert r[4] == 0
    for _ in range(200):
        t = torch.rand(12, 5).double() * (torch.rand(12, 5) < 0.7)
        assert ((g.double() * t).sum(0) >= r * (g_prev.double() * t).sum(0)).all()
    assert torch.equal(_ratio(torch.zeros(3, 2), torch.zeros(3, 2)), torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(_ratio(2 * g_prev, g_prev), [2.0] * 5, rtol=1e-15)
