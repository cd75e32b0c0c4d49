"""Core-set by k-center greedy (Sener & Savarese, "Active Learning for Convolutional Neural
Networks: A Core-Set Approach", ICLR 2018, arXiv:1708.00489), on penultimate features.

Time O(N k D) for k picks among N candidates (plus O(N L D) once for L labeled centres); extra
memory O(N) plus a fixed block: one running min-distance vector over the candidates and their
squared norms. A pick updates the vector with one matrix-vector product,
||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, so no N x N matrix and no N x D temporary is ever built;
the initial distances to the labeled centres go block by block (`block` x `block` at most).
tests/test_coreset_scale.py checks the picks against a brute-force N x N implementation and that
no intermediate tensor reaches N x D or N x N elements; scripts/bench_select.py times 10k-50k pools.

Agrees with the usual baseline code, DeepAL+ (SineZHAN/deepALplus, query_strategies/kcenter_greedy.py,
KCenterGreedy.query, the same as ej0cl6/deep-active-learning): tests/golden/test_coreset.py pins its
ordered picks. Ours: with no labeled centres the first pick is the point farthest from the mean (their
code needs at least one labeled point).

References: arXiv:1708.00489
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench.strategies.base import SelectionContext, Strategy

BLOCK = 2048  # rows (and centres) per block of the initial distances: 16 MB of float32 at most


def min_sq_dist(x: torch.Tensor, centres: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Squared Euclidean distance of each row of x to its nearest row of `centres`, computed
    block x block via the norm expansion (a matrix product per block), clamped at 0."""
    best = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
    for c0 in range(0, centres.shape[0], block):
        c = centres[c0:c0 + block]
        c_sq = c.pow(2).sum(dim=1)
        for r0 in range(0, x.shape[0], block):
            xr = x[r0:r0 + block]
            d = torch.addmm(xr.pow(2).sum(dim=1, keepdim=True) + c_sq, xr, c.T, alpha=-2.0)
            torch.minimum(best[r0:r0 + block], d.min(dim=1).values.clamp_min_(0.0), out=best[r0:r0 + block])
    return best


def _sq_norms(x: torch.Tensor, block: int) -> torch.Tensor:
    out = torch.empty(x.shape[0], device=x.device, dtype=x.dtype)
    for r0 in range(0, x.shape[0], block):
        torch.sum(x[r0:r0 + block].pow(2), dim=1, out=out[r0:r0 + block])
    return out


def k_center_greedy(x: torch.Tensor, centres: torch.Tensor, k: int, block: int = BLOCK) -> np.ndarray:
    """Greedily add the point farthest from the current centres, k times; returns positions in x.
    Ties go to the earliest point. With no initial centres, the first pick is the point farthest
    from the mean."""
    n = x.shape[0]
    if k > n:
        raise ValueError(f"k-center greedy asked for {k} points out of {n}")
    x_sq = _sq_norms(x, block)
    if centres.shape[0] > 0:
        dist = min_sq_dist(x, centres, block)
    else:
        mu = x.mean(dim=0)
        dist = (x_sq - 2.0 * torch.mv(x, mu)).add_(mu.dot(mu))
    picks = []
    d = torch.empty_like(dist)
    for _ in range(k):
        i = int(torch.argmax(dist))
        picks.append(i)
        c = x[i]
        torch.mv(x, c, out=d)
        d.mul_(-2.0).add_(x_sq).add_(x_sq[i])  # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2
        torch.minimum(dist, d, out=dist)
        dist[i] = -1.0  # never picked twice, even when points coincide
    return np.asarray(picks, dtype=np.int64)


class Coreset(Strategy):
    """k-center greedy over the candidates, with the labeled set as the initial centres."""

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        emb = ctx.predict(candidates)["embedding"].float()
        lab = ctx.predict(ctx.labeled)["embedding"].float()
        return candidates[k_center_greedy(emb, lab, k)]
