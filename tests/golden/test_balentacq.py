"""Golden test: balentacq against the authors' code.

Reference: jaeohwoo/BalancedEntropy @ 5cc1a5c117f021dbb1cd1ea55b0c283e298d9916,
src/acquisition_functions.py `AcquisitionFunction.balentacq.compute_scores(logits_B_K_C, None, cpu)`,
which calls src/torch_utils.py `balentacq` (and `marginalized_posterior_entropy`, `beta_function`).
Input: `mc_input()` below, (N, S, C) = (200, 16, 10), passed to their code as torch.log(mc) in float64
(their pipeline stores log-softmax outputs as float64, reduced_consistent_mc_sampler.py); scores taken
as returned, picks = their topk(largest=True, sorted=True). Run under torch 2.14.1, CPU, with only
blackhc.progress_bar added to import their module. The same scores come from float32 log-probabilities.

Measured: al-bench `log_beta="authors"` equals their 200 scores to 3.5e-11 (relative 2e-12); top-40
identical in order. The default `log_beta="stable"` keeps 25 of the 40 (the authors' log B underflows
on 134 of the 200 rows; see the module docstring); al-bench before this change kept 3 of 40.
"""

import math

import numpy as np
import pytest
import torch
from golden_inputs import N, S, mc_input
from golden_inputs import mc_context as context

from al_bench.strategies.balentacq import Balentacq, balentacq, beta_entropy

# their scores of rows 0..7, their top-40 in order, their last 5 (the most negative ratios)
THEIR_SCORES = [-1.81484948248, 0.753490094623, 0.983547421054, 1.20003098565, 0.890396380335, 0.815646241125,
                0.773903723641, 0.684737532813]
THEIR_TOP = [54, 18, 38, 19, 136, 46, 82, 101, 65, 199, 143, 154, 85, 188, 15, 84, 181, 37, 162, 178, 169, 131, 94,
             137, 68, 141, 11, 96, 133, 89, 172, 157, 192, 176, 158, 110, 66, 139, 118, 173]
THEIR_LAST = [50, 78, 155, 100, 64]


def test_authors_log_beta_reproduces_their_scores_and_picks():
    mc = mc_input()
    score = balentacq(mc, log_beta="authors")
    assert score[:8].tolist() == pytest.approx(THEIR_SCORES, rel=1e-9)
    order = np.argsort(-score.numpy(), kind="stable")
    assert order[-5:].tolist() == THEIR_LAST
    strategy = Balentacq(mc_samples=S, log_beta="authors")
    assert strategy.select(context(mc), np.arange(N), 40).tolist() == THEIR_TOP


def h_beta_mp(a, b):
    """Differential entropy of Beta(a, b) at 40 digits (scipy's returns 0.0 for e.g. Beta(2025, 2.9e8))."""
    import mpmath

    with mpmath.workdps(40):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        log_b = mpmath.loggamma(a) + mpmath.loggamma(b) - mpmath.loggamma(a + b)
        return log_b - (a - 1) * mpmath.digamma(a) - (b - 1) * mpmath.digamma(b) + (a + b - 2) * mpmath.digamma(a + b)


def test_stable_log_beta_is_the_beta_entropy_where_theirs_underflows():
    from scipy.stats import beta as beta_dist

    mc = mc_input()
    m, v = mc.mean(1).clamp_min(1e-9), mc.var(1).clamp_min(1e-9)
    alpha = m * m * (1 - m) / v - m
    beta = (1 / m - 1) * alpha
    exact = torch.tensor([[float(h_beta_mp(x + 1, y)) for x, y in zip(ra, rb)]
                          for ra, rb in zip(alpha.tolist(), beta.tolist())], dtype=torch.float64)
    assert (beta_entropy(alpha + 1, beta, "stable") - exact).abs().max() < 1e-6
    authors = beta_entropy(alpha + 1, beta, "authors")
    underflow = (authors - exact).abs() > 1.0
    assert int(underflow.any(1).sum()) == 134 and bool((authors[underflow] > exact[underflow]).all())
    a, b = torch.tensor(1250.5, dtype=torch.float64), torch.tensor(1249.5, dtype=torch.float64)  # m 0.5, v 1e-4
    assert float(beta_entropy(a, b, "authors")) == pytest.approx(1658.298, abs=1e-3)
    assert float(beta_entropy(a, b)) == pytest.approx(beta_dist(1250.5, 1249.5).entropy(), abs=1e-9)
    # the two most confident rows (max mean p 0.9993, 0.9988) come first with theirs, last with the exact h
    order = np.argsort(-balentacq(mc).numpy(), kind="stable")
    assert order[-2:].tolist() == [18, 54] and THEIR_TOP[:2] == [54, 18]
    assert len(set(order[:40].tolist()) & set(THEIR_TOP)) == 25


def test_the_doubled_entropy_term_matters():
    # the paper's ratio MJEnt / (H(Y) + log 2), without the H(Y) the authors' code adds, is another ranking
    mc = mc_input()
    paper = np.argsort(-balentacq(mc, log_beta="authors", paper_ratio=True).numpy(), kind="stable")[:40]
    assert len(set(paper.tolist()) & set(THEIR_TOP)) == 18
    assert math.isclose(float(balentacq(mc, log_beta="authors")[0]), THEIR_SCORES[0], rel_tol=1e-9)
