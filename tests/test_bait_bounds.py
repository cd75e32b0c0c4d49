"""BAIT's bounded greedy (every row's tr(R_x) kept by one (N, d) x (d, 2 C c) product per step through the
structure of B_x B_x^T; exact gains only for the rows whose bound can win, from A = M^-1 and X = A F A or
from the hot rows' updated S_x, R_x) against the straightforward greedy: at every step A = M^-1 by an explicit
inverse and every candidate's exact gain tr((I +- V_x^T A V_x)^-1 V_x^T A F A V_x)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al_bench.strategies import bait
from al_bench.strategies.bait import bait_batch, class_factors, fisher_sum, project


def plain(probs, emb, is_labeled, k, lam, oversample, top, dim):
    """Forward to oversample x k by the largest exact gain, backward to k by the smallest removal increase."""
    p, x = probs.double(), project(emb.double(), dim)
    n_all, c = p.shape
    d = x.shape[1]
    lab = torch.as_tensor(is_labeled)
    rows = torch.nonzero(~lab).squeeze(1)
    scale = float(int(lab.sum()) + k)
    f = fisher_sum(p, x) / n_all
    m = lam * torch.eye(c * d, dtype=torch.float64) + fisher_sum(p[lab], x[lab]) / scale
    b = class_factors(p[rows], min(top, c)) * np.sqrt(k / scale)
    v = (b[:, :, None, :] * x[rows][:, None, :, None]).reshape(len(rows), c * d, -1)  # V_x (N, C d, c)
    eye = torch.eye(v.shape[2], dtype=torch.float64)

    def gains(sign):
        a = torch.linalg.inv(m)
        s = v.transpose(1, 2) @ a @ v
        r = v.transpose(1, 2) @ a @ f @ a @ v
        return torch.linalg.solve(eye + sign * s, r).diagonal(dim1=1, dim2=2).sum(1)

    order, changes = [], []
    for _ in range(min(oversample * k, len(rows))):
        g = gains(+1.0)
        g[order] = -float("inf")
        j = int(torch.argmax(g))
        order.append(j)
        changes.append(float(g[j]))
        m = m + v[j] @ v[j].T
    while len(order) > k:
        g = gains(-1.0)
        live = sorted(order)  # row order: ties go to the first
        j = live[int(torch.argmin(g[live]))]
        order.remove(j)
        changes.append(float(g[j]))
        m = m - v[j] @ v[j].T
    return order, np.asarray(changes)


CASES = [  # (n, C, D, n_lab, k, lam, top_classes, proj_dim, seed)
    (300, 10, 40, 30, 12, 1.0, 10, 6, 0),  # every label (the q = p, s = 1 form of B_x B_x^T)
    (250, 6, 12, 20, 10, 0.1, 3, 5, 1),  # top_classes < C: q on the top labels
    (200, 4, 6, 0, 15, 0.01, 4, 6, 2),  # no labeled set, a small ridge, proj_dim = D
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("resync,evict,first", [(256, 32, 8), (3, 0, 1), (5, 2, 40)])
def test_bounded_greedy_equals_the_plain_greedy(case, resync, evict, first, monkeypatch):
    """Same picks (order included) and trace changes to rounding, also with the bound's rebuild every 3
    steps, no hot rows kept between steps (every exact gain from A and X) and other screening widths."""
    monkeypatch.setattr(bait, "RESYNC", resync)
    monkeypatch.setattr(bait, "EVICT", evict)
    monkeypatch.setattr(bait, "EXACT_FIRST", first)
    n, c, d, n_lab, k, lam, top, dim, seed = case
    torch.manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, c), 1)
    emb = torch.relu(torch.randn(n, d) + 0.3)  # non-negative, as post-ReLU embeddings
    is_labeled = np.arange(n) < n_lab
    want, want_changes = plain(probs, emb, is_labeled, k, lam, 2, top, dim)
    for chunk in (7, 1024):
        got, changes = bait_batch(probs, emb, is_labeled, k, lam, 2, top, dim, chunk)
        assert got.tolist() == (np.flatnonzero(~is_labeled)[want]).tolist()
        np.testing.assert_allclose(changes, want_changes, rtol=1e-9)


@pytest.mark.parametrize("top", [10, 4])
def test_kept_traces_equal_fresh_traces(top):
    """After forward and backward updates, every row's kept tr(R_x) equals tr(V_x^T X V_x) computed afresh."""
    torch.manual_seed(3)
    n, c, d = 120, 10, 5
    p = torch.softmax(2 * torch.randn(n, c, dtype=torch.float64), 1)
    e = torch.randn(n, d, dtype=torch.float64)
    f = fisher_sum(p, e) / n
    a = torch.linalg.inv(torch.eye(c * d, dtype=torch.float64) + f)
    b = class_factors(p, top) * 0.5
    labels = p.topk(top, dim=1).indices
    q = torch.zeros_like(p).scatter_(1, labels, p.gather(1, labels))
    with bait.BlockPool() as pool:
        g = bait._Greedy(a, f, (e, b, p, q, q.sum(1)), 0.25, top, 16, pool)
        m = torch.eye(c * d, dtype=torch.float64) + f
        v = (b[:, :, None, :] * e[:, None, :, None]).reshape(n, c * d, top)
        for step, (j, sign) in enumerate([(3, 1.0), (50, 1.0), (7, 1.0), (50, -1.0), (99, 1.0)]):
            g.update(j, sign, step)
            m = m + sign * v[j] @ v[j].T
        np.testing.assert_allclose(g.a.numpy(), torch.linalg.inv(m).numpy(), rtol=1e-9, atol=1e-12)
        kept = g.trr.clone()
        g.resync()
        np.testing.assert_allclose(kept.numpy(), g.trr.numpy(), rtol=1e-10)
        direct = (v.transpose(1, 2) @ g.x @ v).diagonal(dim1=1, dim2=2).sum(1)
        np.testing.assert_allclose(g.trr.numpy(), direct.numpy(), rtol=1e-10)
