"""Core-set by k-center greedy (Sener & Savarese, "Active Learning for Convolutional Neural
Networks: A Core-Set Approach", ICLR 2018, arXiv:1708.00489), on penultimate features.

Time O(N k) distance evaluations, extra memory O(N): one running min-distance vector over the
candidates, updated in chunks with the newly picked centre; no N x N matrix.
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench.strategies.base import SelectionContext, Strategy


def min_sq_dist(x: torch.Tensor, centres: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Squared distance of each row of x to its nearest row of `centres`, chunked over centres."""
    best = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
    for start in range(0, centres.shape[0], chunk):
        d = torch.cdist(x, centres[start:start + chunk]).pow(2).min(dim=1).values
        best = torch.minimum(best, d)
    return best


def k_center_greedy(x: torch.Tensor, centres: torch.Tensor, k: int) -> np.ndarray:
    """Greedily add the point farthest from the current centres, k times; returns positions in x.
    Ties go to the earliest point. With no initial centres, the first pick is the point farthest
    from the mean."""
    if centres.shape[0] > 0:
        dist = min_sq_dist(x, centres)
    else:
        dist = (x - x.mean(dim=0, keepdim=True)).pow(2).sum(dim=1)
    picks = []
    for _ in range(k):
        i = int(torch.argmax(dist))
        picks.append(i)
        dist = torch.minimum(dist, (x - x[i]).pow(2).sum(dim=1))
        dist[i] = -1.0  # never picked twice, even when points coincide
    return np.asarray(picks, dtype=np.int64)


class Coreset(Strategy):
    """k-center greedy over the candidates, with the labeled set as the initial centres."""

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        emb = ctx.predict(candidates)["embedding"].float()
        lab = ctx.predict(ctx.labeled)["embedding"].float()
        return candidates[k_center_greedy(emb, lab, k)]
