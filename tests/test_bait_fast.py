"""BAIT's low-rank greedy (only the (N, c, c) blocks V_x^T A V_x and V_x^T A F A V_x are kept, updated
from A = M^-1; a forward step's exact gains only where the bound tr(R_x) can reach the best) against the
definition: at every step each candidate's trace change computed from an explicit (C d x C d) inverse of
M + V_x V_x^T (forward) or M - V_x V_x^T (backward)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies import bait
from al_bench.strategies.bait import bait_batch


def reference(probs, emb, is_labeled, k, lam, oversample, top, dim):
    """Forward-backward greedy on tr(M^-1 F) with explicit inverses; returns (positions, trace changes)."""
    p, x = probs.double(), emb.double()
    if x.shape[1] > dim:  # top `dim` uncentred principal directions
        x = x @ torch.linalg.svd(x, full_matrices=False)[2][:dim].T
    n_all, c = p.shape

    def fisher(i, labels):
        g = torch.stack([torch.kron(p[i] - torch.eye(c, dtype=torch.float64)[y], x[i]) for y in labels])
        return (g.T * p[i, labels]) @ g  # sum_y p_y g_y g_y^T

    lab = np.flatnonzero(is_labeled)
    rows = np.flatnonzero(~is_labeled)
    scale = len(lab) + k
    f = sum(fisher(i, range(c)) for i in range(n_all)) / n_all
    m = lam * torch.eye(c * x.shape[1], dtype=torch.float64) + sum(fisher(i, range(c)) for i in lab) / scale
    own = {i: fisher(i, p[i].topk(min(top, c)).indices.tolist()) * k / scale for i in rows}

    def trace(mat):
        return float(torch.trace(torch.linalg.solve(mat, f)))

    order, changes = [], []
    for _ in range(min(oversample * k, len(rows))):
        base = trace(m)
        gain = {i: base - trace(m + own[i]) for i in rows if i not in order}
        best = max(gain, key=gain.get)
        order.append(best)
        changes.append(gain[best])
        m = m + own[best]
    while len(order) > k:
        base = trace(m)
        loss = {i: trace(m - own[i]) - base for i in order}
        worst = min(loss, key=loss.get)
        order.remove(worst)
        changes.append(loss[worst])
        m = m - own[worst]
    return [int(np.flatnonzero(rows == i)[0]) for i in order], np.asarray(changes)


CASES = [  # (n, C, D, n_lab, k, lam, top_classes, proj_dim, seed)
    (40, 4, 3, 5, 6, 1.0, 4, 3, 0),  # exact: every label, every dimension
    (45, 5, 6, 4, 5, 0.1, 3, 4, 1),  # top_classes < C and proj_dim < D
    (36, 3, 5, 0, 7, 0.01, 2, 2, 2),  # no labeled set, a small ridge
    (160, 3, 2, 10, 6, 1.0, 3, 2, 4),  # more candidates than the 32 exact gains a forward step starts from
]


@pytest.mark.parametrize("first", [1, 32])  # exact gains from the largest bound only: the rest by the bound
@pytest.mark.parametrize("case", CASES)
def test_low_rank_greedy_equals_explicit_inverses(case, first, monkeypatch):
    monkeypatch.setattr(bait, "EXACT_FIRST", first)
    n, c, d, n_lab, k, lam, top, dim, seed = case
    torch.manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n, c), 1)
    emb = torch.randn(n, d)
    is_labeled = np.arange(n) < n_lab
    want, want_changes = reference(probs, emb, is_labeled, k, lam, 2, top, dim)
    for chunk in (1, 7, 1024):
        got, changes = bait_batch(probs, emb, is_labeled, k, lam, 2, top, dim, chunk)
        assert (got - n_lab).tolist() == want  # positions among all rows; the candidates follow the labeled
        np.testing.assert_allclose(changes, want_changes, rtol=1e-6, atol=1e-9)  # the reference subtracts traces
