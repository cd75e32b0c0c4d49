"""k-means sampling: cluster the candidates' penultimate embeddings into k clusters and take, in each
cluster, the member nearest its centre (a diversity baseline, e.g. in Ash et al. 2020,
arXiv:1906.03671, and Zhdanov 2019, arXiv:1901.05954).

Follows the usual baseline code, DeepAL+ (SineZHAN/deepALplus, query_strategies/kmeans_sampling.py,
KMeansSampling.query; the same as ej0cl6/deep-active-learning): sklearn KMeans(n_clusters=k) with the
defaults of the scikit-learn 1.0.2 its environment pins (10 k-means++ restarts, 300 Lloyd iterations,
tol 1e-4 of the mean feature variance), then per cluster its member nearest the centre, clusters in
centre order. tests/golden/test_kmeans.py pins its picks. Ours: the k-means itself (Lloyd's algorithm
from plain k-means++ seeds, Arthur & Vassilvitskii 2007) runs in torch on the selection device and is
shared by typiclust, probcover and alfamix; an empty cluster keeps its centre (sklearn relocates it)
and, having no member, takes the nearest candidate not picked yet (DeepAL+ would fail there).

Cost: time O(n_init max_iter N k D), memory O(N D + k D) plus a (chunk, k) distance block.

References: arXiv:1901.05954, arXiv:1906.03671
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy


def sq_dists(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    return ((x * x).sum(1, keepdim=True) + (centres * centres).sum(1)[None] - 2.0 * x @ centres.T).clamp_min(0.0)


def assign(x: torch.Tensor, centres: torch.Tensor, chunk_elems: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest centre, its squared distance) for every row of x, chunked over rows."""
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    best = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    step = max(1, chunk_elems // max(1, centres.shape[0]))
    for start in range(0, x.shape[0], step):
        d = sq_dists(x[start:start + step], centres)
        best[start:start + step], labels[start:start + step] = d.min(dim=1)
    return labels, best


def kmeans_pp(x: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
    """k-means++ seeding: the first centre uniformly, each next one with probability ~ D(x)^2."""
    n = x.shape[0]
    idx = [int(rng.integers(n))]
    dist = sq_dists(x, x[idx[0]][None])[:, 0]
    for _ in range(k - 1):
        w = dist.double().cpu().numpy()
        i = int(rng.choice(n, p=w / w.sum())) if w.sum() > 0 else int(rng.integers(n))
        idx.append(i)
        dist = torch.minimum(dist, sq_dists(x, x[i][None])[:, 0])
    return x[idx].clone()


def kmeans(x: torch.Tensor, k: int, rng: np.random.Generator, n_init: int = 1, max_iter: int = 100,
           tol: float = 1e-6, init: torch.Tensor | None = None,
           chunk_elems: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: (centres (k, D), labels (N,)) of the restart with the lowest inertia; it stops
    when the centres move less than tol x the summed feature variance (squared). `init` (k, D): one
    run from these centres instead of k-means++ restarts. An empty cluster keeps its previous centre."""
    x = x.double()
    best = None
    for _ in range(1 if init is not None else max(1, n_init)):
        centres = init.double().clone() if init is not None else kmeans_pp(x, k, rng)
        for _ in range(max_iter):
            labels, _ = assign(x, centres, chunk_elems)
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            shift = (new - centres).pow(2).sum()
            centres = new
            if shift <= tol * x.var(dim=0).sum().clamp_min(1e-30):
                break
        labels, d = assign(x, centres, chunk_elems)
        if best is None or float(d.sum()) < best[0]:
            best = (float(d.sum()), centres, labels)
    return best[1], best[2]


def nearest_distinct(x: torch.Tensor, centres: torch.Tensor) -> np.ndarray:
    """For each centre in turn, the position of its nearest row of x not taken by an earlier centre."""
    taken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    picks = []
    for c in centres:
        d = sq_dists(x, c[None])[:, 0]
        d[taken] = float("inf")
        i = int(torch.argmin(d))
        taken[i] = True
        picks.append(i)
    return np.asarray(picks, dtype=np.int64)


def nearest_member(x: torch.Tensor, centres: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """For each centre in turn, the position of its cluster's member nearest it (ties: the earlier row);
    an empty cluster takes its nearest row not picked by another centre."""
    lab = labels.cpu().numpy()
    d_own = (x - centres[labels]).pow(2).sum(1).cpu().numpy()
    order = np.lexsort((np.arange(len(lab)), d_own, lab))
    ids, first = np.unique(lab[order], return_index=True)
    picks = np.full(centres.shape[0], -1, dtype=np.int64)
    picks[ids] = order[first]
    taken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    taken[torch.as_tensor(picks[picks >= 0], device=x.device)] = True
    for c in np.flatnonzero(picks < 0):
        d = sq_dists(x, centres[c][None])[:, 0]
        d[taken] = float("inf")
        picks[c] = int(torch.argmin(d))
        taken[picks[c]] = True
    return picks


class Kmeans(Strategy):
    """k clusters over the candidates' embeddings, each cluster's member nearest its centre."""

    def __init__(self, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4):
        if int(n_init) < 1 or int(max_iter) < 1 or float(tol) < 0:
            raise ConfigError(f"strategy.n_init and strategy.max_iter must be >= 1 and tol >= 0, "
                              f"got {n_init}, {max_iter}, {tol}")
        self.n_init, self.max_iter, self.tol = int(n_init), int(max_iter), float(tol)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        emb = ctx.predict(candidates)["embedding"].double()
        # sklearn's tol is relative to the mean feature variance, kmeans()'s to their sum
        centres, labels = kmeans(emb, k, ctx.rng, self.n_init, self.max_iter, self.tol / emb.shape[1])
        return candidates[nearest_member(emb, centres, labels)]
