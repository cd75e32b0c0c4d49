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

Cost: time O(N^2 D) for the graph and the purity radius (in blocks of 2M distances: 16 MB whatever N),
O(E + k N) for the greedy, E the number of edges; memory O(N D) plus the edge list, 8 bytes per edge
(int32 pairs) and 8 more while it is sorted by destination: E is the method's graph, up to N^2 when
delta is large.

References: arXiv:2205.11320
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.clustering import kmeans, sq_dists

BLOCK_ELEMS = 1 << 21  # distances per block: 16 MB of float64


def _rows(n_cols: int, chunk: int | None) -> int:
    """`chunk` rows per block, by default as many as make about BLOCK_ELEMS distances, whatever N."""
    return chunk or max(1, BLOCK_ELEMS // max(1, n_cols))


def radius_from_purity(x: torch.Tensor, pseudo: torch.Tensor, purity: float, chunk: int | None = None) -> float:
    """The largest delta such that a fraction >= purity of the open delta-balls hold one pseudo-label only:
    the ball around x is pure iff its nearest other-label point is >= delta away."""
    nearest_other = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    x_sq = (x * x).sum(1)
    step = _rows(x.shape[0], chunk)
    for start in range(0, x.shape[0], step):
        d = sq_dists(x[start:start + step], x, x_sq[start:start + step], x_sq)
        d[pseudo[start:start + step, None] == pseudo[None, :]] = float("inf")
        nearest_other[start:start + step] = d.min(dim=1).values.sqrt()
    ordered = torch.sort(nearest_other.double().cpu()).values
    delta = float(ordered[min(int(np.floor((1.0 - purity) * len(ordered))), len(ordered) - 1)])
    return min(delta, 2.0)  # 2 = the diameter of the unit sphere: every pair is within it


def ball_edges(x: torch.Tensor, delta: float, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, dst) of every pair with ||x_src - x_dst|| < delta, self-pairs included, sorted by src then
    dst; int32 where N allows (half the memory of the edge list)."""
    idx = torch.int32 if x.shape[0] < 2 ** 31 else torch.int64
    src, dst = [], []
    x_sq = (x * x).sum(1)
    step = _rows(x.shape[0], chunk)
    for start in range(0, x.shape[0], step):
        close = sq_dists(x[start:start + step], x, x_sq[start:start + step], x_sq) < delta * delta
        rows = torch.arange(close.shape[0], device=x.device)
        close[rows, rows + start] = True  # rounding must not drop a point from its own ball
        i, j = torch.nonzero(close, as_tuple=True)
        src.append((i + start).to(idx))
        dst.append(j.to(idx))
    return torch.cat(src), torch.cat(dst)


def probcover_select(x: torch.Tensor, is_labeled: np.ndarray, k: int, delta: float,
                     rng: np.random.Generator, chunk: int | None = None) -> np.ndarray:
    """Positions (among the unlabeled rows of x) that greedily cover the most uncovered points.

    The out-degrees (uncovered points in each ball) are counted once and then decremented as points
    get covered, through the edges sorted by destination: O(E) over the whole greedy instead of
    O(E) per pick; the same integers, so the same argmax (ties: the earlier row)."""
    n = x.shape[0]
    src, dst = (t.cpu().numpy() for t in ball_edges(x, delta, chunk))
    by_dst = np.argsort(dst, kind="stable")
    src_by_dst = src[by_dst]
    dst_start = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=n))])
    src_start = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])  # src is sorted
    del by_dst
    covered = np.zeros(n, dtype=bool)
    degree = np.bincount(src, minlength=n).astype(np.int64)

    def cover(points: np.ndarray) -> None:
        points = np.unique(points[~covered[points]])
        if len(points) == 0:
            return
        covered[points] = True
        into = np.concatenate([src_by_dst[dst_start[u]:dst_start[u + 1]] for u in points])
        degree[:] -= np.bincount(into, minlength=n)

    lab = np.asarray(is_labeled, dtype=bool)
    cover(dst[lab[src]])
    pickable = ~lab
    picks = []
    for _ in range(k):
        score = np.where(pickable, degree, -1)
        i = int(np.argmax(score))
        if score[i] <= 0:  # all covered: the rest uniformly
            rest = np.flatnonzero(pickable)
            picks += rng.choice(rest, size=k - len(picks), replace=False).tolist()
            break
        picks.append(i)
        pickable[i] = False
        cover(dst[src_start[i]:src_start[i + 1]])
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
