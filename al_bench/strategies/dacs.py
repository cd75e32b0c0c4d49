"""DACS: density-aware core-set (Kim & Shin, "In Defense of Core-set: A Density-aware Core-set
Selection for Active Learning", KDD 2022, arXiv:2206.04838).

Core-set (k-center greedy) made density aware: the candidates' local density is estimated from
their nearest neighbours in the L2-normalised penultimate embedding space, the candidates are split
into groups of similar density, and each group gets a share of the batch that grows as its density
falls (the paper finds locally sparse regions more informative). k-center greedy then runs inside
each group, sparsest first, with the labeled set and the earlier groups' picks as centres.

Choices (our reading of the paper, all exposed): density = mean cosine similarity to the `knn`
nearest neighbours among the labeled and candidate points, computed exactly in chunks (the paper's
locality-sensitive hashing is only a faster approximation of it); `num_groups` equal-size groups by
density rank; group shares softmax(-mean group density / `temperature`), rounded by largest
remainder, a group's surplus over its size passed on to the next sparsest; the model's own
embeddings (the paper trains an auxiliary low-dimensional head for them).

No public code by the authors was found (searched GitHub for the paper's title and the first author's
repositories), so nothing is pinned against it; tests cover the budget rule and chunk invariance.

Cost: time O(N^2 D) for the densities + O(N k D) for k-center greedy; memory O(N D) plus fixed
blocks: about 2M similarities (16 MB) per density block whatever N, 2048 x 2048 distances in k-center.

References: arXiv:2206.04838
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.clustering import BLOCK, k_center_greedy

BLOCK_ELEMS = 1 << 21  # similarities per block of the density pass: 16 MB of float64


def knn_density(x: torch.Tensor, query: torch.Tensor, knn: int, chunk: int | None = None) -> torch.Tensor:
    """Mean cosine similarity of each row of x[query] to its knn nearest other rows of x (unit rows),
    `chunk` rows at a time; by default as many as make about BLOCK_ELEMS similarities (16 MB of
    float64), whatever N."""
    rows = torch.nonzero(query).squeeze(1)
    kk = min(knn, x.shape[0] - 1)
    out = torch.empty(len(rows), dtype=x.dtype, device=x.device)
    chunk = chunk or max(1, BLOCK_ELEMS // max(1, x.shape[0]))
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        sim = x[r] @ x.T
        sim[torch.arange(len(r)), r] = -float("inf")
        out[start:start + chunk] = sim.topk(kk, dim=1).values.mean(dim=1)
    return out


def group_budgets(mean_density: np.ndarray, sizes: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """Per-group budgets summing to min(k, sum(sizes)); groups are listed sparsest first."""
    z = -mean_density / temperature
    share = np.exp(z - z.max())
    share = k * share / share.sum()
    budget = np.floor(share).astype(np.int64)
    for g in np.argsort(-(share - budget), kind="stable")[: k - budget.sum()]:
        budget[g] += 1
    surplus = 0
    for g in range(len(budget)):  # pass surpluses down to the next sparsest group
        budget[g] += surplus
        surplus = max(0, budget[g] - sizes[g])
        budget[g] -= surplus
    for g in range(len(budget)):  # whatever is left goes back to the sparsest groups with room
        extra = min(surplus, sizes[g] - budget[g])
        budget[g] += extra
        surplus -= extra
    return budget


def dacs_select(x: torch.Tensor, is_labeled: np.ndarray, k: int, knn: int = 10, num_groups: int = 5,
                temperature: float = 0.1, chunk: int | None = None) -> np.ndarray:
    """Positions (among the unlabeled rows of unit-norm x) picked by density-aware core-set."""
    lab = torch.as_tensor(is_labeled, device=x.device)
    unl = np.flatnonzero(~is_labeled)
    density = knn_density(x, ~lab, knn, chunk).cpu().numpy()
    rank = np.argsort(density, kind="stable")  # sparsest first
    groups = [g for g in np.array_split(rank, min(num_groups, len(rank))) if len(g)]
    mean_density = np.array([density[g].mean() for g in groups])
    budgets = group_budgets(mean_density, np.array([len(g) for g in groups]), k, temperature)
    centres = x[lab]
    picks: list[int] = []
    for g, b in zip(groups, budgets):
        if b == 0:
            continue
        members = unl[g]
        chosen = members[k_center_greedy(x[members], centres, int(b), chunk or BLOCK)]
        picks += chosen.tolist()
        centres = torch.cat([centres, x[chosen]])
    return np.asarray(picks, dtype=np.int64)


class Dacs(Strategy):
    """k-center greedy inside density groups, with more of the batch from sparse groups."""

    def __init__(self, knn: int = 10, num_groups: int = 5, temperature: float = 0.1):
        if int(knn) < 1 or int(num_groups) < 1 or float(temperature) <= 0:
            raise ConfigError(f"strategy.knn, num_groups must be >= 1 and temperature > 0; "
                              f"got {knn}, {num_groups}, {temperature}")
        self.knn, self.num_groups, self.temperature = int(knn), int(num_groups), float(temperature)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows, is_labeled = ctx.with_labeled(candidates)
        x = torch.nn.functional.normalize(ctx.predict(rows)["embedding"].double(), dim=1)
        return rows[dacs_select(x, is_labeled, k, self.knn, self.num_groups, self.temperature)]
