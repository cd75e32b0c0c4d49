"""EPIG against its authors' code.

Reference: fbickfordsmith/epig@ca81da9becf40091064ec3f2c1fdbb98c7564552, src/uncertainty/epig_logprobs.py
`epig_from_logprobs_using_matmul(logprobs_pool=pool.log(), logprobs_targ=targ.log())`, the estimator its
MC-dropout trainer (src/trainers/base_classif_logprobs.py, `estimate_epig_batch`) calls under the default
`use_matmul: True`; the scores are pinned below. Its other three estimators (`epig_from_logprobs`,
src/uncertainty/epig_probs.py `epig_from_probs` and `epig_from_probs_using_matmul`) gave the same scores
(max abs difference to al-bench 6e-16 for all four). Only the score is compared: how the targets are chosen
(here from the unlabeled pool, there from a target set) is outside these functions.

Input: torch.manual_seed(seed); probs = softmax(2 * torch.randn(N + M, S, C).double(), dim=2) (CPU);
pool = probs[:N], targ = probs[N:].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies.bald import bald
from al_bench.strategies.epig import epig

# (N, M, S, C, seed) -> the reference's EPIG score of each pool row
CASES = [
    ((12, 7, 6, 3, 0),
     [0.051356613314, 0.05835963662, 0.053125054306, 0.075745585616, 0.08008924738, 0.088271810852,
      0.056570219473, 0.02343274754, 0.037831306663, 0.027898191672, 0.025343609589, 0.066159202943]),
    ((10, 5, 4, 4, 1),
     [0.07344726578, 0.113523894394, 0.1079062713, 0.141473209525, 0.110387958537, 0.08091241659,
      0.117915141859, 0.118339071727, 0.102399350153, 0.076260425381]),
]


def make_input(n, m, s, c, seed):
    torch.manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n + m, s, c).double(), dim=2)
    return probs[:n], probs[n:]


@pytest.mark.parametrize("case,scores", CASES)
def test_epig_equals_the_authors_code(case, scores):
    pool, targ = make_input(*case)
    np.testing.assert_allclose(epig(pool, targ).numpy(), scores, rtol=0, atol=1e-11)


@pytest.mark.parametrize("case,scores", CASES)
def test_epig_ranks_unlike_bald(case, scores):
    """The target inputs matter: BALD (information about the weights) orders the pool differently."""
    pool, _ = make_input(*case)
    assert np.argsort(-bald(pool).numpy()).tolist() != np.argsort(-np.asarray(scores)).tolist()


@pytest.mark.parametrize("case,scores", CASES)
def test_epig_chunks_do_not_change_the_scores(case, scores):
    n, m, s, c, seed = case
    pool, targ = make_input(*case)
    runs = [epig(pool, targ, chunk_elems=elems) for elems in (1, 3 * m * c * c, 1 << 22)]  # 1, 3 or all rows
    for got in runs:
        np.testing.assert_allclose(got.numpy(), runs[-1].numpy(), rtol=0, atol=1e-14)
