"""BatchBALD's blocked joint entropy (one (M, S) x (S, b C) product per block, xlogy in place, the weights
applied after the sum over labels) against the direct sum, and its greedy against an enumeration of
every label configuration of the batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from al_bench.strategies.batchbald import batchbald_batch, joint_entropy


def direct(configs, weights, probs):
    """-sum_{m,y} w_m p log p with p = 1/S sum_s configs[m, s] probs[n, s, y], term by term."""
    pj = torch.einsum("ms,nsy->nmy", configs, probs) / probs.shape[1]
    terms = torch.where(pj > 0, pj * torch.log(pj.clamp_min(1e-300)), torch.zeros_like(pj))
    return -(weights[None, :, None] * terms).sum(dim=(1, 2))


@pytest.mark.parametrize("chunk_elems", [1, 7 * 30 * 4, 1 << 18])
def test_blocked_joint_entropy_equals_the_direct_sum(chunk_elems):
    torch.manual_seed(0)
    probs = torch.softmax(2 * torch.randn(23, 6, 4).double(), dim=2)
    probs[3, :, 1] = 0.0  # a label no weight sample gives: p log p = 0 there
    probs[3] /= probs[3].sum(dim=1, keepdim=True)
    configs = torch.rand(30, 6).double()
    configs[5] = 0.0  # a configuration impossible under every weight sample
    weights = torch.rand(30).double()
    got = joint_entropy(configs, weights, probs, chunk_elems)
    torch.testing.assert_close(got, direct(configs, weights, probs), rtol=1e-12, atol=1e-14)


def enumerated(probs, picks, x):
    """H(y_A, y_x) by enumerating every configuration of the picks and x: p(y) = mean_s prod_i p(y_i | w_s)."""
    rows = list(picks) + [x]
    total = 0.0
    for ys in itertools.product(range(probs.shape[2]), repeat=len(rows)):
        p = torch.ones(probs.shape[1], dtype=torch.float64)
        for r, y in zip(rows, ys):
            p = p * probs[r, :, y]
        p = float(p.mean())
        total -= p * np.log(p) if p > 0 else 0.0
    return total


def test_exact_greedy_equals_the_enumeration():
    torch.manual_seed(3)
    probs = torch.softmax(2 * torch.randn(10, 4, 3).double(), dim=2)
    picks, scores = batchbald_batch(probs, 4, 10**6)  # 3^3 <= M: the exact joint throughout
    cond = -(probs * probs.log()).sum(2).mean(1)
    chosen = []
    for step in range(4):
        score = {x: enumerated(probs, chosen, x) - float(cond[chosen + [x]].sum())
                 for x in range(10) if x not in chosen}
        best = max(score, key=score.get)
        assert int(picks[step]) == best
        assert scores[step] == pytest.approx(score[best], abs=1e-12)
        chosen.append(best)
