"""BADGE: batch active learning by diverse gradient embeddings (Ash, Zhang, Krishnamurthy, Langford &
Agarwal, "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020,
arXiv:1906.03671).

Each candidate's gradient embedding is the gradient of the cross-entropy with its own predicted label
with respect to the last linear layer's weights: g = a (x) e with a = p - onehot(argmax p) (C) and
e the penultimate embedding (D). k-means++ seeding over the g picks the batch. The C x D vectors are
never built: ||g_i - g_j||^2 = ||e_i||^2 ||a_i||^2 + ||e_j||^2 ||a_j||^2 - 2 (e_i . e_j)(a_i . a_j).

Choices: `first: max_norm` starts from the largest gradient (as the authors' code does), `random`
from a uniform draw (textbook k-means++); the bias gradient is left out as in the paper.

Cost: time O(k N (C + D)): k sequential matrix-vector passes over the N x D embeddings (memory-bound,
N D 8 bytes each); memory O(N (C + D)): one running min-distance vector and one buffer, no N x N
matrix and no per-pick allocation.

References: arXiv:1906.03671
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy


def grad_factors(probs: torch.Tensor) -> torch.Tensor:
    """a = p - onehot(argmax p), the class factor of the last-layer gradient embedding."""
    a = probs.double().clone()
    a[torch.arange(a.shape[0]), a.argmax(dim=1)] -= 1.0
    return a


def factorised_sq_dist(a: torch.Tensor, e: torch.Tensor, j: int, sq: torch.Tensor | None = None,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """||g_i - g_j||^2 for every i, with g = a (x) e, in O(N (C + D)); `sq` the precomputed
    ||a_i||^2 ||e_i||^2 and `out` an (N,) buffer, to allocate nothing per call (the same numbers)."""
    sq = (a * a).sum(1) * (e * e).sum(1) if sq is None else sq
    out = torch.empty_like(sq) if out is None else out
    m = torch.mv(e, e[j], out=out).mul_(2.0).mul_(torch.mv(a, a[j]))  # (2 e.e_j) (a.a_j), in this order
    return torch.sub(sq + sq[j], m, out=out).clamp_min_(0.0)


def kmeans_pp_gradients(probs: torch.Tensor, emb: torch.Tensor, k: int, rng: np.random.Generator,
                        first: str = "max_norm") -> np.ndarray:
    """Positions of k points seeded by k-means++ (D^2 sampling) over the gradient embeddings."""
    a, e = grad_factors(probs), emb.double()
    n = a.shape[0]
    sq = (a * a).sum(1) * (e * e).sum(1)
    if first == "max_norm":
        i = int(torch.argmax(sq))
    else:
        i = int(rng.integers(n))
    picks = [i]
    dist = factorised_sq_dist(a, e, i, sq)
    dist[i] = 0.0
    buf = torch.empty_like(dist)
    for _ in range(min(k, n) - 1):
        weights = dist.cpu().numpy()
        total = weights.sum()
        if total > 0:
            i = int(rng.choice(n, p=weights / total))
        else:  # every remaining point coincides with a centre
            i = int(rng.choice(np.setdiff1d(np.arange(n), picks)))
        picks.append(i)
        torch.minimum(dist, factorised_sq_dist(a, e, i, sq, buf), out=dist)
        dist[i] = 0.0  # the earlier picks are 0 already: a distance is never raised by the minimum
    return np.asarray(picks, dtype=np.int64)


class Badge(Strategy):
    """k-means++ seeding over last-layer gradient embeddings: uncertain and diverse."""

    def __init__(self, first: str = "max_norm"):
        if first not in ("max_norm", "random"):
            raise ConfigError(f"strategy.first must be max_norm or random, got {first!r}")
        self.first = first

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        preds = ctx.predict(candidates)
        return candidates[kmeans_pp_gradients(preds["probs"], preds["embedding"], k, ctx.rng, self.first)]
