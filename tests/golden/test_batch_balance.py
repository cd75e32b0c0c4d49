"""Batch-BALanCe (greedy) against its authors' code, and on hand-made hypotheses whose answer is known.

Reference: zhangrenyuuchicago/BALanCe@92757e924ca8c64a0a6f95dec1762def4fdad692,
Greedy/BALanCe_RepeatedMNIST/mc_eced_gpu.py `delta_batch_mc_eced(model, pool, hamming_pool, device="cpu",
B=b, M=M, sample_num=K, sampling_index=min(si, b), hamming_dis_threshold=tau, class_num=C)` for b = 1..8,
each run after torch.manual_seed(draw_seed); the picks of b = 8 and, for every b, the returned score of
the b-th pick are pinned below (every run's picks extend the previous run's). Same unmodified files,
stand-ins and input as tests/golden/test_balance.py (N = 30, K = 10, C = 4). Their four data-loader
passes each draw one int64 from torch's global generator before the first torch.multinomial, so
al-bench's generator is advanced by four such draws to reach the same state; with it the sampled label
configurations are theirs. Their float32 arithmetic: scores agree to 5e-8 (1e-6 asserted); run in
float64 (their file with float32 -> float64) the scores agree to 6e-16.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from al_bench.strategies.balance import balance_scores, pair_ratio, pair_split
from al_bench.strategies.batch_balance import batch_balance_batch


def make_input(seed, n=30, k=10, c=4):
    """The input of tests/golden/test_balance.py."""
    torch.manual_seed(seed)
    base = 3 * torch.randn(n, 1, c)
    scale = torch.linspace(0.2, 3.0, k).repeat(2)
    return torch.softmax(base + scale[None, :, None] * torch.randn(n, 2 * k, c), dim=2)

# (seed, tau, M, sampling_index, draw_seed) -> the reference's picks and the score of each at its step
CASES = [
    ((0, 0.2, 10000, 2, 0), [9, 29, 7, 18, 8, 3, 16, 12],
     [0.64654386, 0.766274929, 0.790029883, 0.797140002, 0.798825681, 0.79946661, 0.799735546, 0.799872696]),
    ((0, 0.2, 1000, 3, 5), [9, 29, 7, 18, 8, 3, 16, 6],
     [0.64654386, 0.766274929, 0.789901853, 0.797179759, 0.798807919, 0.799507201, 0.799759567, 0.799888194]),
    ((1, 0.3, 10000, 2, 0), [7, 10, 9, 20, 24, 5, 22, 0],
     [0.5272457, 0.591504455, 0.598629951, 0.599769711, 0.599949419, 0.599987149, 0.599996269, 0.599999189]),
    ((1, 0.3, 1000, 3, 5), [7, 10, 9, 20, 24, 5, 22, 18],
     [0.5272457, 0.591504455, 0.598771691, 0.599767804, 0.59995079, 0.599988997, 0.599997997, 0.599999487]),
]


def their_generator(seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(4):  # the reference's data-loader passes
        torch.empty((), dtype=torch.int64).random_(generator=gen)
    return gen


@pytest.mark.parametrize("case,picks,scores", CASES)
def test_batch_balance_equals_the_authors_code(case, picks, scores):
    seed, tau, m, sampling_index, draw_seed = case
    probs = make_input(seed)
    got, got_scores = batch_balance_batch(probs, pair_split(probs, tau), len(picks), m, sampling_index,
                                          their_generator(draw_seed))
    assert got.tolist() == picks
    np.testing.assert_allclose(got_scores, scores, rtol=0, atol=1e-6)


def brute_force(probs, split, picks, x):
    """Delta(A + x) = sum over every configuration (y_A, y) of pbar(y_A, y) 1/K sum_k split_k (1 - lambda_k lambda'_k)."""
    p = probs.double()
    k = p.shape[1] // 2
    rows = list(picks) + [x]
    total = 0.0
    for ys in itertools.product(range(p.shape[2]), repeat=len(rows)):
        joint = torch.ones(2 * k, dtype=torch.float64)
        top = torch.ones(2 * k, dtype=torch.float64)
        for r, y in zip(rows, ys):
            joint = joint * p[r, :, y]
            top = top * p[r].amax(dim=1)
        lam = joint / top
        total += float(joint.mean() * (split * (1 - lam[:k] * lam[k:])).sum() / k)
    return total


def test_exact_steps_equal_the_brute_force_joint():
    """While |A| < sampling_index the score is the exact joint BALanCe score of A + x (enumerated here)."""
    probs = make_input(2, n=12, k=4, c=3)
    split = pair_split(probs, 0.25)
    assert 0 < split.sum() < 4
    picks, scores = batch_balance_batch(probs, split, 3, sampling_index=3, dtype=torch.float64)
    picks32, scores32 = batch_balance_batch(probs, split, 3, sampling_index=3)  # the default, float32
    assert picks32.tolist() == picks.tolist() and np.abs(scores32 - scores).max() < 1e-6
    for step in range(3):
        assert scores[step] == pytest.approx(brute_force(probs, split, picks[:step], picks[step]), abs=1e-12)
        want = max(brute_force(probs, split, picks[:step], x) for x in range(12) if x not in picks[:step])
        assert scores[step] == pytest.approx(want, abs=1e-12)


def test_batch_avoids_a_duplicate_of_a_chosen_point():
    """Rows 0 and 1 are the same point, cutting pairs 0 and 1; row 2 cuts pairs 2 and 3 a little less
    surely. Top-2 of the per-point score takes the duplicate; the batch takes row 2, whose label says
    something the first pick's label did not (the exact and the sampled joint both)."""
    def hyp(labels_g, labels_h, sure):
        g = [torch.full((2,), 1 - sure).index_fill(0, torch.tensor([y]), sure) for y in labels_g]
        h = [torch.full((2,), 1 - sure).index_fill(0, torch.tensor([y]), sure) for y in labels_h]
        return torch.stack(g + h).double()

    a = hyp([0, 0, 0, 0], [1, 1, 0, 0], 0.99)
    b = hyp([0, 0, 0, 0], [0, 0, 1, 1], 0.9)
    quiet = hyp([0, 0, 0, 0], [0, 0, 0, 0], 0.99)
    probs = torch.stack([a, a, b, quiet, quiet, quiet])
    split = torch.ones(4, dtype=torch.float64)
    single = balance_scores(probs, split)
    assert single[0] == single[1] > single[2] > single[3]
    assert batch_balance_batch(probs, split, 2, sampling_index=2)[0].tolist() == [0, 2]
    assert batch_balance_batch(probs, split, 3, 10000, 1, torch.Generator().manual_seed(0))[0].tolist()[:2] == [0, 2]


def test_long_batches_stay_finite():
    """200 picks of 10 classes: the picks' joint probabilities (1e-200 and below) are kept as logarithms."""
    probs = make_input(4, n=300, k=5, c=10)
    split = torch.ones(5, dtype=torch.float64)
    picks, scores = batch_balance_batch(probs, split, 200, 2000, 2, torch.Generator().manual_seed(0))
    assert len(set(picks.tolist())) == 200 and np.isfinite(scores).all()
    assert scores[-1] <= float(split.sum()) / 5 + 1e-9  # at most every counted pair cut


def test_pair_ratio_is_lambda_lambda_prime():
    probs = make_input(0)
    lam = probs.double() / probs.double().amax(dim=2, keepdim=True)
    torch.testing.assert_close(pair_ratio(probs), lam[:, :10] * lam[:, 10:], rtol=0, atol=0)

