"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit High
and Low Budgets", ICML 2022, arXiv:2202.02794), the TPC-RP variant run on the model's own
penultimate embeddings: no self-supervised representation is trained offline here, so with a weak
model the clusters are weaker than the paper's SimCLR ones.

The labeled set and the candidates (L2-normalised) are clustered together into min(|L| + k,
`max_clusters`) k-means clusters. Clusters of at most `min_cluster_size` points are dropped; the others
are ordered once, fewest labeled points first, then largest first (then by cluster id), and the k picks
go round this order: each takes the most typical still unlabeled point of its cluster. Typicality is
1 / (mean squared distance to the kk nearest other unlabeled points of the cluster + 1e-5), with
kk = min(`knn`, n_free // 2) and n_free the cluster's unlabeled points not yet picked.

Follows the authors' code (avihu111/TypiClust, deep-al/pycls/al/typiclust.py, TypiClust.select_samples
and calculate_typicality): squared distances (faiss IndexFlatL2), min(20, n_free // 2) neighbours among
the cluster's unlabeled points recomputed at each pick, size > 5 to keep a cluster, the static order
walked round-robin, features L2-normalised (pycls load_features). tests/golden/test_typiclust.py pins
its picks. Named option: `distance: euclidean`, the paper's typicality (mean of plain distances).
Ours: the clustering is this package's torch k-means (the authors use sklearn KMeans up to 50 clusters,
MiniBatchKMeans above); where the authors' code would fail, a cluster with nothing left to pick is
skipped in the round, and once no kept cluster has any (or none is above the size limit) the dropped
clusters take turns in the same order.

Cost: k-means O(iters N K D) with K clusters; typicality O(n_c^2 D) per pick, n_c the cluster's size;
memory O(N D) plus one cluster's (n_c, n_c) distance block.

References: arXiv:2202.02794
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.clustering import kmeans, sq_dists


def typicality(x: torch.Tensor, knn: int, distance: str = "squared") -> torch.Tensor:
    """1 / (mean (squared) Euclidean distance to the knn nearest other rows + 1e-5)."""
    d = sq_dists(x, x)
    if distance == "euclidean":
        d = d.sqrt()
    d.fill_diagonal_(float("inf"))
    return 1.0 / (d.topk(knn, dim=1, largest=False).values.mean(dim=1) + 1e-5)


def cluster_order(ids: np.ndarray, sizes: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """`ids` sorted by labeled count (fewest first), then size (largest first), then id."""
    return ids[np.lexsort((ids, -sizes, covered))]


def typiclust_pick(x: torch.Tensor, labels: np.ndarray, is_labeled: np.ndarray, k: int,
                   min_cluster_size: int = 5, knn: int = 20, distance: str = "squared") -> np.ndarray:
    """Positions (among the unlabeled rows of x) picked by TypiClust from fixed cluster `labels`."""
    is_labeled = np.asarray(is_labeled, dtype=bool)
    ids, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    covered = np.bincount(inverse[is_labeled], minlength=len(ids))
    free = [list(np.flatnonzero((inverse == j) & ~is_labeled)) for j in range(len(ids))]
    if k > sum(len(f) for f in free):
        raise ValueError(f"TypiClust asked for {k} points out of {sum(len(f) for f in free)} unlabeled")
    big = sizes > min_cluster_size
    # the authors' code fails once the kept clusters run dry; we go on with the dropped ones
    orders = [cluster_order(np.flatnonzero(keep), sizes[keep], covered[keep]) for keep in (big, ~big)]
    picks: list[int] = []
    for order in orders:
        step = 0
        while len(picks) < k and any(free[j] for j in order):
            j = order[step % len(order)]
            step += 1
            if not free[j]:
                continue
            members = np.asarray(free[j])
            kk = min(knn, len(members) // 2)
            best = 0 if kk == 0 else int(torch.argmax(typicality(x[members], kk, distance)))
            picks.append(int(members[best]))
            del free[j][best]
    return np.asarray(picks, dtype=np.int64)


class Typiclust(Strategy):
    """The most typical point of each of the largest uncovered clusters, round-robin."""

    def __init__(self, max_clusters: int = 500, min_cluster_size: int = 5, knn: int = 20,
                 distance: str = "squared", normalize: bool = True):
        if distance not in ("squared", "euclidean"):
            raise ConfigError(f"strategy.distance must be squared or euclidean, got {distance}")
        self.max_clusters, self.min_cluster_size, self.knn = int(max_clusters), int(min_cluster_size), int(knn)
        self.distance, self.normalize = distance, bool(normalize)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows, is_labeled = ctx.with_labeled(candidates)
        x = ctx.predict(rows)["embedding"].double()
        if self.normalize:
            x = torch.nn.functional.normalize(x, dim=1)
        n_clusters = min(len(ctx.labeled) + k, self.max_clusters, len(rows))
        _, labels = kmeans(x, n_clusters, ctx.rng)
        pos = typiclust_pick(x, labels.cpu().numpy(), is_labeled, k, self.min_cluster_size, self.knn,
                             self.distance)
        return rows[pos]
