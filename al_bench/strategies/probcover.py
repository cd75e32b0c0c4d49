"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022, arXiv:2205.11320), run on the model's own L2-normalised penultimate embeddings: no
self-supervised representation is trained offline here.

Points (labeled and candidates) are joined by an edge when they lie closer than delta (open balls). Every
point within delta of a labeled point is covered. k times: pick the candidate whose delta-ball
holds the most uncovered points, then mark them covered. When nothing is left to cover, the rest
is drawn uniformly, as in the paper.

Choices: `delta` the ball radius; null = the paper's rule, the largest delta whose ball purity is
at least `purity` (alpha = 0.95) with k-means pseudo-labels (one cluster per class). A ball around
x is pure when no point of another pseudo-label is within delta, so purity(delta) is the fraction
of points whose nearest other-label point is at least delta away, and the largest admissible delta
is an order statistic of those distances: no grid search needed.

Follows the authors' code (avihu111/TypiClust, deep-al/pycls/al/prob_cover.py, ProbCover.construct_graph
and select_samples): edges x -> y iff ||x - y|| < delta, labeled points' balls covered first, argmax of
the uncovered out-degree (ties: the earlier row); tests/golden/test_probcover.py pins its picks.
Not followed: their graph loop skips the last N mod 500 rows as ball centres (a batching slip), and
once all is covered their argmax returns row 0 (possibly a labeled point) where we draw uniformly.

Cost: time O(N^2 D) for the graph (chunked) and O(k E) for the greedy, E the number of edges;
memory O(E), up to O(N^2) when delta is large (keep the candidate subset moderate).

References: arXiv:2205.11320
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.clustering import kmeans, sq_dists


def radius_from_purity(x: torch.Tensor, pseudo: torch.Tensor, purity: float, chunk: int = 2048) -> float:
    """The largest delta such that a fraction >= purity of the open delta-balls hold one pseudo-label only:
    the ball around x is pure iff its nearest other-label point is >= delta away."""
    nearest_other = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        d = sq_dists(x[start:start + chunk], x)
        d[pseudo[start:start + chunk, None] == pseudo[None, :]] = float("inf")
        nearest_other[start:start + chunk] = d.min(dim=1).values.sqrt()
    ordered = torch.sort(nearest_other.double().cpu()).values
    delta = float(ordered[min(int(np.floor((1.0 - purity) * len(ordered))), len(ordered) - 1)])
    return min(delta, 2.0)  # 2 = the diameter of the unit sphere: every pair is within it


def ball_edges(x: torch.Tensor, delta: float, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, dst) of every pair with ||x_src - x_dst|| < delta, self-pairs included."""
    src, dst = [], []
    for start in range(0, x.shape[0], chunk):
        close = sq_dists(x[start:start + chunk], x) < delta * delta
        rows = torch.arange(close.shape[0], device=x.device)
        close[rows, rows + start] = True  # rounding must not drop a point from its own ball
        i, j = torch.nonzero(close, as_tuple=True)
        src.append(i + start)
        dst.append(j)
    return torch.cat(src), torch.cat(dst)


def probcover_select(x: torch.Tensor, is_labeled: np.ndarray, k: int, delta: float,
                     rng: np.random.Generator, chunk: int = 2048) -> np.ndarray:
    """Positions (among the unlabeled rows of x) that greedily cover the most uncovered points."""
    n = x.shape[0]
    src, dst = ball_edges(x, delta, chunk)
    lab = torch.as_tensor(is_labeled, device=x.device)
    covered = torch.zeros(n, dtype=torch.bool, device=x.device)
    covered[dst[lab[src]]] = True
    pickable = ~lab.clone()
    picks = []
    for _ in range(k):
        alive = ~covered[dst]
        degree = torch.bincount(src[alive], minlength=n)
        degree[~pickable] = -1
        i = int(torch.argmax(degree))
        if int(degree[i]) <= 0:  # all covered: the rest uniformly
            rest = torch.nonzero(pickable).squeeze(1).cpu().numpy()
            picks += rng.choice(rest, size=k - len(picks), replace=False).tolist()
            break
        picks.append(i)
        pickable[i] = False
        covered[dst[src == i]] = True
    return np.asarray(picks, dtype=np.int64)


class Probcover(Strategy):
    """Max coverage of delta-balls around the picks, greedy."""

    def __init__(self, delta: float | None = None, purity: float = 0.95):
        if delta is not None and float(delta) <= 0:
            raise ConfigError(f"strategy.delta must be > 0 or null, got {delta}")
        if not 0.0 < float(purity) <= 1.0:
            raise ConfigError(f"strategy.purity must be in (0, 1], got {purity}")
        self.delta, self.purity = delta, float(purity)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows, is_labeled = ctx.with_labeled(candidates)
        preds = ctx.predict(rows)
        x = torch.nn.functional.normalize(preds["embedding"].double(), dim=1)
        delta = self.delta
        if delta is None:
            _, pseudo = kmeans(x, preds["probs"].shape[1], ctx.rng)
            delta = radius_from_purity(x, pseudo, self.purity)
        return rows[probcover_select(x, is_labeled, k, float(delta), ctx.rng)]
