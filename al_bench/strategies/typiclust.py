"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High
and Low Budgets", ICML 2022, arXiv:2202.02794), the TPC-RP variant run on the model's own
penultimate embeddings: no self-supervised representation is trained offline here, so with a weak
model the clusters are weaker than the paper's SimCLR ones.

The labeled set and the candidates are clustered together into min(|L| + k, `max_clusters`)
k-means clusters. k times: take the cluster with the fewest labeled or picked points (ties: the
largest), skipping clusters smaller than `min_cluster_size`, and pick its most typical candidate,
typicality(x) = 1 / mean distance to its `knn` nearest neighbours inside the cluster.

Choices: `max_clusters` 500, `min_cluster_size` 5 and `knn` 20 follow the paper's setup; when no
cluster is large enough the size rule is dropped.

Cost: k-means O(iters N K D) with K clusters; typicality O(sum_c n_c^2 D) ~ O(N^2 D / K); memory
O(N D) plus one cluster's (n_c, n_c) distance block.

References: arXiv:2202.02794
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.kmeans import kmeans, sq_dists


def typicality(x: torch.Tensor, knn: int) -> torch.Tensor:
    """1 / (mean Euclidean distance to the min(knn, n - 1) nearest other rows); inf for a lone row."""
    n = x.shape[0]
    kk = min(knn, n - 1)
    if kk < 1:
        return torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    d = sq_dists(x, x).sqrt()
    d.fill_diagonal_(float("inf"))
    return 1.0 / d.topk(kk, dim=1, largest=False).values.mean(dim=1).clamp_min(1e-12)


def typiclust_select(emb: torch.Tensor, is_labeled: np.ndarray, k: int, rng: np.random.Generator,
                     max_clusters: int = 500, min_cluster_size: int = 5, knn: int = 20,
                     max_iter: int = 100) -> np.ndarray:
    """Positions (among the unlabeled rows of emb) picked by TypiClust; `is_labeled` marks rows."""
    n_lab = int(is_labeled.sum())
    n_clusters = min(n_lab + k, max_clusters, emb.shape[0])
    _, labels = kmeans(emb.double(), n_clusters, rng, max_iter=max_iter)
    labels = labels.cpu().numpy()
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.bincount(labels[is_labeled], minlength=n_clusters)
    free = [np.flatnonzero((labels == c) & ~is_labeled) for c in range(n_clusters)]
    typ = {}
    picks = []
    for _ in range(k):
        has_free = np.array([len(f) > 0 for f in free])
        eligible = has_free & (sizes >= min_cluster_size)
        if not eligible.any():
            eligible = has_free
        order = np.lexsort((-sizes, covered))  # fewest covered first, then largest
        c = int(next(c for c in order if eligible[c]))
        if c not in typ:
            members = np.flatnonzero(labels == c)
            typ[c] = dict(zip(members.tolist(), typicality(emb[members].double(), knn).cpu().numpy().tolist()))
        best = max(free[c], key=lambda i: (typ[c][int(i)], -int(i)))
        picks.append(int(best))
        free[c] = free[c][free[c] != best]
        covered[c] += 1
    return np.asarray(picks, dtype=np.int64)


class Typiclust(Strategy):
    """The most typical candidate of each of the largest uncovered clusters."""

    def __init__(self, max_clusters: int = 500, min_cluster_size: int = 5, knn: int = 20):
        self.max_clusters, self.min_cluster_size, self.knn = int(max_clusters), int(min_cluster_size), int(knn)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows = np.concatenate([ctx.labeled, candidates])
        emb = ctx.predict(rows)["embedding"]
        is_labeled = np.arange(len(rows)) < len(ctx.labeled)
        pos = typiclust_select(emb, is_labeled, k, ctx.rng, self.max_clusters, self.min_cluster_size, self.knn)
        return rows[pos]
