"""k-means sampling: cluster the candidates' penultimate embeddings into k clusters and take the
candidate nearest each centre (a diversity baseline, e.g. in Ash et al. 2020, arXiv:1906.03671, and
Zhdanov 2019, arXiv:1901.05954).

The k-means here (Lloyd's algorithm from k-means++ seeds, Arthur & Vassilvitskii 2007) runs in
torch on the selection device and is shared by typiclust, probcover and alfamix.

Choices: `n_init` restarts (the lowest inertia wins), `max_iter` Lloyd iterations. If two centres
share their nearest candidate, the later centre takes its nearest candidate not yet taken.

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
           tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: (centres (k, D), labels (N,)) of the restart with the lowest inertia.
    An empty cluster keeps its previous centre."""
    x = x.double()
    best = None
    for _ in range(max(1, n_init)):
        centres = kmeans_pp(x, k, rng)
        for _ in range(max_iter):
            labels, _ = assign(x, centres)
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            shift = (new - centres).pow(2).sum()
            centres = new
            if shift <= tol * x.var(dim=0).sum().clamp_min(1e-30):
                break
        labels, d = assign(x, centres)
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


class Kmeans(Strategy):
    """k clusters over the candidates' embeddings, the candidate nearest each centre."""

    def __init__(self, n_init: int = 1, max_iter: int = 100):
        if int(n_init) < 1 or int(max_iter) < 1:
            raise ConfigError(f"strategy.n_init and strategy.max_iter must be >= 1, got {n_init}, {max_iter}")
        self.n_init, self.max_iter = int(n_init), int(max_iter)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        emb = ctx.predict(candidates)["embedding"].double()
        centres, _ = kmeans(emb, k, ctx.rng, self.n_init, self.max_iter)
        return candidates[nearest_distinct(emb, centres)]
