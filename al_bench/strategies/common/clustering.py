"""k-means (Lloyd's algorithm from k-means++ seeds, Arthur & Vassilvitskii 2007), the nearest members
of its clusters, and k-center greedy (Sener & Savarese 2018, arXiv:1708.00489), in torch on the
selection device; used by kmeans, typiclust, probcover, alfamix (k-means) and coreset, dacs
(k-center greedy). Pairwise distances go in chunks or blocks: no N x N matrix, no N x D temporary
beyond the inputs (tests/test_coreset_scale.py).
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK = 2048  # rows (and centres) per block of the initial distances: 16 MB of float32 at most


def sq_dists(x: torch.Tensor, centres: torch.Tensor, x_sq: torch.Tensor | None = None,
             c_sq: torch.Tensor | None = None) -> torch.Tensor:
    """(||x||^2 + ||c||^2) - 2 x.c for every pair, clamped at 0; precomputed row norms may be passed
    (the same numbers either way: the same reductions, the same order of operations)."""
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    c_sq = (centres * centres).sum(1) if c_sq is None else c_sq
    d = (x @ centres.T).mul_(-2.0)  # -2m + (a + b) is (a + b) - 2m exactly: negation and commutation are exact
    return d.add_(x_sq[:, None] + c_sq[None]).clamp_min_(0.0)


def _rows_per_block(n_cols: int, chunk_elems: int) -> int:
    return max(1, chunk_elems // max(1, n_cols))


def assign(x: torch.Tensor, centres: torch.Tensor, chunk_elems: int = 1 << 21,
           x_sq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(nearest centre, its squared distance) for every row of x, in blocks of about chunk_elems
    distances (16 MB of float64 by default)."""
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    c_sq = (centres * centres).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    best = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    step = _rows_per_block(centres.shape[0], chunk_elems)
    for start in range(0, x.shape[0], step):
        d = sq_dists(x[start:start + step], centres, x_sq[start:start + step], c_sq)
        torch.min(d, dim=1, out=(best[start:start + step], labels[start:start + step]))
    return labels, best


def _two_nearest(x: torch.Tensor, x_sq: torch.Tensor, centres: torch.Tensor, c_sq: torch.Tensor,
                 chunk_elems: int, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(nearest centre, its squared distance, the second-nearest squared distance) for every row of x,
    or of x[rows] (gathered block by block: no |rows| x D copy)."""
    n = x.shape[0] if rows is None else rows.shape[0]
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    d1 = torch.empty(n, dtype=x.dtype, device=x.device)
    d2 = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    step = _rows_per_block(centres.shape[0], chunk_elems)
    for s in range(0, n, step):
        if rows is None:
            xb, xb_sq = x[s:s + step], x_sq[s:s + step]
        else:
            xb, xb_sq = x.index_select(0, rows[s:s + step]), x_sq.index_select(0, rows[s:s + step])
        d = sq_dists(xb, centres, xb_sq, c_sq)
        torch.min(d, dim=1, out=(d1[s:s + step], labels[s:s + step]))
        if centres.shape[0] > 1:
            d.scatter_(1, labels[s:s + step, None], float("inf"))
            d2[s:s + step] = d.min(dim=1).values
    return labels, d1, d2


def _half_gap(centres: torch.Tensor, c_sq: torch.Tensor, chunk_elems: int) -> torch.Tensor:
    """Half the distance from each centre to its nearest other centre (Hamerly's s)."""
    k = centres.shape[0]
    out = torch.full((k,), float("inf"), dtype=centres.dtype, device=centres.device)
    step = _rows_per_block(k, chunk_elems)
    for s in range(0, k, step):
        d = sq_dists(centres[s:s + step], centres, c_sq[s:s + step], c_sq)
        d[torch.arange(d.shape[0], device=d.device), torch.arange(s, s + d.shape[0], device=d.device)] = float("inf")
        out[s:s + step] = d.min(dim=1).values
    return out.sqrt_().mul_(0.5)


def kmeans_pp(x: torch.Tensor, k: int, rng: np.random.Generator, x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """k-means++ seeding: the first centre uniformly, each next one with probability ~ D(x)^2.
    One matrix-vector product per centre into a reused buffer (no N x D temporary): the same numbers
    as sq_dists(x, centre)."""
    n = x.shape[0]
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    idx = [int(rng.integers(n))]
    dist = sq_dists(x, x[idx[0]][None], x_sq, x_sq[idx[0]][None])[:, 0]
    buf = torch.empty_like(dist)
    for _ in range(k - 1):
        w = dist.double().cpu().numpy()
        i = int(rng.choice(n, p=w / w.sum())) if w.sum() > 0 else int(rng.integers(n))
        idx.append(i)
        torch.mv(x, x[i], out=buf).mul_(-2.0).add_(x_sq + x_sq[i]).clamp_min_(0.0)
        torch.minimum(dist, buf, out=dist)
    return x[idx].clone()


def kmeans(x: torch.Tensor, k: int, rng: np.random.Generator, n_init: int = 1, max_iter: int = 100,
           tol: float = 1e-6, init: torch.Tensor | None = None,
           chunk_elems: int = 1 << 21) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: (centres (k, D), labels (N,)) of the restart with the lowest inertia; it stops
    when the centres move less than tol x the summed feature variance (squared). `init` (k, D): one
    run from these centres instead of k-means++ restarts. An empty cluster keeps its previous centre.

    Each iteration skips the rows whose nearest centre cannot have changed (Hamerly 2010: an upper
    bound on the distance to the own centre, a lower bound on the second nearest, both moved by the
    centre shifts, and half the gap between centres), with a safety margin for rounding; the others
    get the full distance pass. The labels are those of full passes (tests/test_clustering_fast.py)."""
    x = x.double()
    x_sq = (x * x).sum(1)
    var = x.var(dim=0).sum().clamp_min(1e-30)
    tau = 1e-7 * float(x_sq.max().sqrt()) if x.shape[0] else 0.0  # rounding of distances from the norm expansion
    best = None
    for _ in range(1 if init is not None else max(1, n_init)):
        centres = init.double().clone() if init is not None else kmeans_pp(x, k, rng, x_sq)
        c_sq = (centres * centres).sum(1)
        labels, d1, d2 = _two_nearest(x, x_sq, centres, c_sq, chunk_elems)
        upper, lower = d1.sqrt(), d2.sqrt()
        for it in range(max_iter):
            sums = torch.zeros_like(centres).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=k).to(x.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
            move = (new - centres).pow(2)
            shift = move.sum()
            centres = new
            if shift <= tol * var or it == max_iter - 1:
                break
            c_sq = (centres * centres).sum(1)
            delta = move.sum(1).sqrt_()
            upper.add_(delta[labels])
            lower.sub_(delta.max())
            bound = torch.maximum(lower, _half_gap(centres, c_sq, chunk_elems)[labels])
            check = upper.mul(1 + 1e-9).add_(tau) >= bound
            rows = torch.nonzero(check).squeeze(1)
            if rows.numel() == 0:
                continue
            lab, r1, r2 = _two_nearest(x, x_sq, centres, c_sq, chunk_elems, rows)
            labels[rows], upper[rows], lower[rows] = lab, r1.sqrt(), r2.sqrt()
        labels, d = assign(x, centres, chunk_elems, x_sq)
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
    d_own = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    step = _rows_per_block(x.shape[1], BLOCK * BLOCK)  # row blocks: no N x D temporary
    for s in range(0, x.shape[0], step):
        d_own[s:s + step] = (x[s:s + step] - centres[labels[s:s + step]]).pow(2).sum(1)
    d_own = d_own.cpu().numpy()
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
