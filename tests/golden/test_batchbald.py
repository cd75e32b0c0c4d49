"""BatchBALD against its authors' code.

Reference: BlackHC/batchbald_redux@e56c2607ceafc312a99c32b521bdd2355e4716fe, batchbald_redux/batchbald.py
`get_batchbald_batch(log_probs_N_K_C=probs.log(), batch_size=k, num_samples=M, dtype=torch.double,
device="cpu")` (as in its 01_batchbald notebook), with torch.manual_seed(draw_seed) set just before the call
(its sampled joint draws from torch's global generator). Its returned `indices` and `scores` are pinned
below. The first picks use the exact joint (C^|A| <= M), the later ones the sampled joint: al-bench draws
its configurations with the same multinomial call, so given torch.Generator().manual_seed(draw_seed) the
sampled steps agree too (checked with torch 2.14.1 on CPU; max abs score difference 4e-15 over all steps).

Input: torch.manual_seed(seed); probs = softmax(2 * torch.randn(N, S, C).double(), dim=2) (CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies.bald import bald
from al_bench.strategies.batchbald import batchbald_batch, batchbald_select

# (N, S, C, seed, k, M, draw_seed) -> the reference's (indices, scores)
CASES = [
    ((20, 5, 3, 0, 6, 30, 0),  # exact for picks 1-4 (3^3 = 27 <= 30), sampled for 5-6
     [4, 3, 16, 8, 19, 5],
     [0.637240595109, 1.092032987929, 1.319920616234, 1.441827591809, 1.319079546733, 2.057449480232]),
    ((30, 8, 4, 1, 7, 100, 3),  # exact for picks 1-4 (4^3 = 64 <= 100), sampled for 5-7
     [8, 20, 18, 29, 11, 14, 15],
     [0.747736584696, 1.370690975503, 1.716896724273, 1.883907259964, 1.877555870517, 2.34425369375,
      2.110994114637]),
]


def make_input(n, s, c, seed):
    torch.manual_seed(seed)
    return torch.softmax(2 * torch.randn(n, s, c).double(), dim=2)


@pytest.mark.parametrize("case,indices,scores", CASES)
def test_batchbald_equals_the_authors_code(case, indices, scores):
    n, s, c, seed, k, m, draw_seed = case
    picks, got = batchbald_batch(make_input(n, s, c, seed), k, m, torch.Generator().manual_seed(draw_seed))
    assert picks.tolist() == indices
    np.testing.assert_allclose(got, scores, rtol=0, atol=1e-9)


def test_batchbald_switches_to_sampling_when_c_to_the_picks_exceeds_m():
    """Exact while C^|A| <= M, as in the reference: with C = 3 and M = 27 the 4th pick (|A| = 3) still sees
    the exact joint, so its score equals the all-exact one; with M = 26 it is sampled and differs."""
    probs = make_input(20, 5, 3, 0)
    exact = batchbald_batch(probs, 4, 10**6)[1]
    np.testing.assert_allclose(batchbald_batch(probs, 4, 27, torch.Generator().manual_seed(0))[1], exact,
                               rtol=0, atol=1e-12)
    sampled = batchbald_batch(probs, 4, 26, torch.Generator().manual_seed(0))[1]
    np.testing.assert_allclose(sampled[:3], exact[:3], rtol=0, atol=1e-12)
    assert abs(sampled[3] - exact[3]) > 1e-3


def test_batchbald_is_not_bald():
    """On the pinned input the batch differs from BALD's top-k (the joint term matters)."""
    (n, s, c, seed, k, m, draw_seed), indices, _ = CASES[0]
    probs = make_input(n, s, c, seed)
    assert np.argsort(-bald(probs).numpy(), kind="stable")[:k].tolist() != indices
    assert batchbald_select(probs, k, m, torch.Generator().manual_seed(draw_seed)).tolist() == indices


@pytest.mark.parametrize("case,indices,scores", CASES)
def test_batchbald_chunks_do_not_change_the_scores(case, indices, scores):
    n, s, c, seed, k, m, draw_seed = case
    probs = make_input(n, s, c, seed)
    runs = [batchbald_batch(probs, k, m, torch.Generator().manual_seed(draw_seed), chunk_elems=elems)
            for elems in (1, 7 * m * c, 1 << 22)]  # one candidate per chunk, >= 7 per chunk, one chunk
    for picks, got in runs:
        assert picks.tolist() == indices
        np.testing.assert_allclose(got, runs[-1][1], rtol=0, atol=1e-12)
