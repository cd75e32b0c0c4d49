"""k-means (Lloyd's algorithm from k-means++ seeds, Arthur & Vassilvitskii 2007), the nearest members
of its clusters, and k-center greedy (Sener & Savarese 2018, arXiv:1708.00489), in torch on the
selection device; used by kmeans, typiclust, probcover, alfamix (k-means) and coreset, dacs
(k-center greedy). Pairwise distances go in chunks or blocks: no N x N matrix, no N x D temporary
beyond the inputs (tests/test_coreset_scale.py).
"""

from __future__ import annotations

import copy
import queue
from concurrent.futures import wait
from contextlib import nullcontext

import numpy as np
import torch

from al_bench.strategies.common.blocks import one_thread_workers, single_thread

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


U32 = 2.0 ** -24  # unit roundoff of float32
SEED_RANK = 64  # columns of the low-rank lower bound that screens rows in k-means++ seeding
SEED_MIN = (32, 128, 4096)  # (k, D, N) from which the screened seeding pays for its set-up (measured)
LLOYD_MIN_WORK = 1 << 24  # N k D from which Lloyd's passes screen labels in float32 first


def _draw(rng: np.random.Generator, dist: torch.Tensor, scratch: tuple[np.ndarray, np.ndarray]) -> int:
    """rng.choice(n, p=w / w.sum()) (uniform if the weights sum to 0) with the same draws and the same
    arithmetic as numpy's (cdf = cumsum(p) / its last entry, one uniform, searchsorted right), into reused
    arrays: a fresh (n,) array per call costs page faults; odd weights go to numpy, which refuses them."""
    w = dist.double().cpu().numpy()
    total = w.sum()
    if not total > 0:
        return int(rng.integers(len(w)))
    if not (1e-280 < total < np.inf):
        return int(rng.choice(len(w), p=w / total))
    p, cdf = scratch
    np.divide(w, total, out=p)
    np.cumsum(p, out=cdf)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


class _SeedScreen:
    """Rows that a new k-means++ centre x_i cannot bring closer, found from a rank-p projection.

    With V (D, p) orthonormal, z = V^T x and rho = ||x - V z|| (lo <= rho <= hi): ||x_r - x_i||^2 >=
    ||z_r - z_i||^2 + (rho_r - rho_i)^2 >= a_r + a_i - 2 (z_r.z_i + hi_r hi_i), a = ||z||^2 + lo^2. The
    product runs in float32 over (N, p + 1); `slack`, 8 (p + 16) u32 max ||x||^2, exceeds twice its
    rounding, that of the float64 set-up and that of the exact pass (every term is at most 4 max ||x||^2).
    A row whose bound minus the slack reaches its current distance keeps it (the exact pass would not
    lower it); the others get the exact pass's expression. V: the top eigenvectors of the second-moment
    matrix of every (N // 4096)-th row (any orthonormal V gives valid bounds; these give tight ones)."""

    def __init__(self, x: torch.Tensor, x_sq: torch.Tensor, rank: int):
        sample = x[:: max(1, x.shape[0] // 4096)]
        v = torch.linalg.eigh(sample.T @ sample)[1][:, -rank:]
        z = x @ v
        z_sq = (z * z).sum(1)
        rho2, eps = x_sq - z_sq, 1e-10 * x_sq
        lo, hi = (rho2 - eps).clamp_min_(0.0).sqrt_(), (rho2 + eps).clamp_min_(0.0).sqrt_()
        slack = 8 * (rank + 16) * U32 * float(x_sq.max())
        self.v, self.slack, self.x_sq_max = v, slack, float(x_sq.max())
        self.z = torch.cat([z, hi[:, None]], 1).float()
        self.a = (z_sq + lo * lo - 0.5 * slack).float()
        self.dist = torch.empty(x.shape[0], dtype=torch.float32)
        self.buf = torch.empty_like(self.dist)
        self.mask = torch.empty(x.shape[0], dtype=torch.bool)
        self.cap = max(64, x.shape[0] // 8)  # more screened rows than this: the whole pass is cheaper
        self.gathered = torch.empty((self.cap + 3, x.shape[1]), dtype=x.dtype)
        self.out = torch.empty(self.cap + 3, dtype=x.dtype)

    def fresh(self) -> _SeedScreen:
        """A copy for another thread: the same projection and bounds, its own scratch buffers."""
        other = copy.copy(self)
        other.dist, other.buf, other.mask = (torch.empty_like(t) for t in (self.dist, self.buf, self.mask))
        other.gathered, other.out = torch.empty_like(self.gathered), torch.empty_like(self.out)
        return other

    def centre_terms(self, centres: torch.Tensor, c_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(z, a) of the centres as of the rows, for the bound between rows and centres; None if some
        centre lies farther out than every row (the slack was sized on the rows; means never do)."""
        if float(c_sq.max()) > self.x_sq_max:
            return None
        z = centres @ self.v
        z_sq = (z * z).sum(1)
        rho2, eps = c_sq - z_sq, 1e-10 * c_sq
        lo, hi = (rho2 - eps).clamp_min_(0.0).sqrt_(), (rho2 + eps).clamp_min_(0.0).sqrt_()
        return torch.cat([z, hi[:, None]], 1).float(), (z_sq + lo * lo - 0.5 * self.slack).float()

    def rows(self, i: int) -> torch.Tensor:
        """Rows whose distance to x_i may be below their current distance (self.dist, in float32)."""
        torch.addmv(self.a, self.z, self.z[i], alpha=-2.0, out=self.buf).sub_(self.dist)
        torch.lt(self.buf, -float(self.a[i]), out=self.mask)
        return torch.nonzero(self.mask).squeeze(1)

    def lower(self, x: torch.Tensor, x_sq: torch.Tensor, i: int, dist: torch.Tensor) -> None:
        """dist = min(dist, the whole pass's distances to x_i), in place: the same numbers. The screened
        rows' x.c come from torch.mv over them gathered in groups of 4 (MKL's gemv sums each row of a
        4-row group as in the whole pass; the N % 4 last rows, which it sums otherwise, are recomputed
        alone, always); past N / 8 screened rows, the whole pass."""
        n = x.shape[0]
        n4 = n - n % 4
        rows = self.rows(i)
        if rows.numel() > self.cap:
            buf = torch.mv(x, x[i]).mul_(-2.0).add_(x_sq + x_sq[i]).clamp_min_(0.0)
            torch.minimum(dist, buf, out=dist)
            self.dist.copy_(dist)
            return
        rows = rows[rows < n4]
        if rows.numel():
            m = rows.numel()
            padded = torch.cat([rows, rows[:1].expand(-m % 4)])
            g, o = self.gathered[:padded.numel()], self.out[:padded.numel()]
            torch.index_select(x, 0, padded, out=g)
            torch.mv(g, x[i], out=o).mul_(-2.0).add_(x_sq[padded] + x_sq[i]).clamp_min_(0.0)
            new = torch.minimum(dist[rows], o[:m])
            dist[rows] = new
            self.dist[rows] = new.float()
        if n4 < n:
            tail = torch.mv(x[n4:], x[i]).mul_(-2.0).add_(x_sq[n4:] + x_sq[i]).clamp_min_(0.0)
            torch.minimum(dist[n4:], tail, out=dist[n4:])
            self.dist[n4:] = dist[n4:]


def _seed_screen(x: torch.Tensor, x_sq: torch.Tensor, k: int) -> _SeedScreen | None:
    n, d = x.shape
    if (x.device.type != "cpu" or x.dtype != torch.float64 or k < SEED_MIN[0] or d < SEED_MIN[1] or n < SEED_MIN[2]
            or not bool(torch.isfinite(x_sq).all()) or float(x_sq.max()) > 1e100):
        return None
    return _SeedScreen(x, x_sq, min(SEED_RANK, d // 2))




def kmeans_pp(x: torch.Tensor, k: int, rng: np.random.Generator, x_sq: torch.Tensor | None = None,
              screen: _SeedScreen | None | bool = True) -> torch.Tensor:
    """k-means++ seeding: the first centre uniformly, each next one with probability ~ D(x)^2.
    Each new centre's squared distances, (||x||^2 + ||c||^2) - 2 x.c with x.c from one matrix-vector
    product (torch.mv) into a reused buffer, update the running minimum; on CPU in float64 from
    SEED_MIN on, only for the rows that _SeedScreen cannot rule out, with the same numbers.
    `screen`: a _SeedScreen built for x (kmeans() shares one between restarts), True to build one when
    it pays, None/False for the whole passes. The k - 1 steps run on one torch thread (single_thread)."""
    n = x.shape[0]
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    if screen is True:
        screen = _seed_screen(x, x_sq, k)
    idx = [int(rng.integers(n))]
    dist = sq_dists(x, x[idx[0]][None], x_sq, x_sq[idx[0]][None])[:, 0]
    buf = torch.empty_like(dist)
    scratch = (np.empty(n), np.empty(n))
    if screen:
        screen.dist.copy_(dist)
    with single_thread() if x.device.type == "cpu" else nullcontext():
        _seed_steps(x, x_sq, k, rng, idx, dist, buf, scratch, screen)
    return x[idx].clone()


def _seed_steps(x: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.Generator, idx: list[int],
                dist: torch.Tensor, buf: torch.Tensor, scratch: tuple[np.ndarray, np.ndarray],
                screen: _SeedScreen | None) -> None:
    for _ in range(k - 1):
        i = _draw(rng, dist, scratch)
        idx.append(i)
        if screen:
            screen.lower(x, x_sq, i, dist)
        else:
            torch.mv(x, x[i], out=buf).mul_(-2.0).add_(x_sq + x_sq[i]).clamp_min_(0.0)
            torch.minimum(dist, buf, out=dist)


class _Float32Labels:
    """Nearest and second-nearest centre of rows of x from float32 distances, the float64 pass for the
    rows where float32 cannot decide.

    ||x||^2 + ||c||^2 - 2 x.c from a float32 product is within err32 = (2D + 16) u32 ||x|| max||c|| +
    4 u32 max||c||^2 of the exact value, and the float64 pass within err64 = 4 (D + 8) u64 (||x||^2 +
    max||c||^2) of it. M = 2 (err32 + err64) per row; a row whose two smallest float32 values are more
    than 2 M apart has one exact nearest centre, which the float64 pass (for any rounding within err64)
    also gives; the others go to _two_nearest. The rows' (upper, lower) bounds for Hamerly's test are the
    float32 values +- M, or the float64 pass's values. Float32 copies and blocks are made once per
    kmeans() call (fresh blocks per pass cost page faults)."""

    def __init__(self, x: torch.Tensor, x_sq: torch.Tensor, k: int, chunk_elems: int):
        self.x, self.x_sq, self.x32 = x, x_sq, x.float()
        self.norm = x_sq.sqrt()
        self.step = _rows_per_block(k, chunk_elems)
        rows = min(self.step, x.shape[0])
        self.block = torch.empty((rows, k), dtype=torch.float32)
        self.gathered = torch.empty((rows, x.shape[1]), dtype=torch.float32)
        self.v1, self.v2 = torch.empty(rows, dtype=torch.float32), torch.empty(rows, dtype=torch.float32)
        self.l1 = torch.empty(rows, dtype=torch.long)
        self.e32, self.e64 = (2 * x.shape[1] + 16) * U32, 4 * (x.shape[1] + 8) * 2.0 ** -53
        self.c32 = torch.empty((k, x.shape[1]), dtype=torch.float32)
        self.own = torch.empty((min(1024, x.shape[0]), x.shape[1]), dtype=x.dtype)
        self.xrows = torch.empty_like(self.own)
        self.gaps = torch.empty((min(k, self.step), k), dtype=torch.float32)
        self.zrows = None  # (rows, p + 1) float32, made with the first screened pass

    def fresh(self) -> _Float32Labels:
        """A copy for another thread: the same float32 rows, its own blocks."""
        other = copy.copy(self)
        for name in ("block", "gathered", "v1", "v2", "l1", "c32", "own", "xrows", "gaps"):
            setattr(other, name, torch.empty_like(getattr(self, name)))
        other.zrows = None
        return other

    def __call__(self, centres: torch.Tensor, c_sq: torch.Tensor, chunk_elems: int,
                 rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.x.shape[0] if rows is None else rows.shape[0]
        labels = torch.empty(n, dtype=torch.long)
        d1, d2 = torch.empty(n, dtype=self.x.dtype), torch.empty(n, dtype=self.x.dtype)
        c32, csq32 = self.c32.copy_(centres), c_sq.float()[None]
        cmax2 = float(c_sq.max())
        e32, e64 = self.e32 * cmax2 ** 0.5, self.e64
        for s in range(0, n, self.step):
            e = min(n, s + self.step)
            if rows is None:
                xb, x_sq, norm = self.x32[s:e], self.x_sq[s:e], self.norm[s:e]
            else:
                r = rows[s:e]
                xb = torch.index_select(self.x32, 0, r, out=self.gathered[:e - s])
                x_sq, norm = self.x_sq[r], self.norm[r]
            blk, v1, v2, l1 = self.block[:e - s], self.v1[:e - s], self.v2[:e - s], self.l1[:e - s]
            torch.addmm(csq32, xb, c32.T, alpha=-2.0, out=blk)
            torch.min(blk, dim=1, out=(v1, l1))
            if blk.shape[1] > 1:
                blk.scatter_(1, l1[:, None], float("inf"))
                torch.amin(blk, dim=1, out=v2)
            else:
                v2.fill_(float("inf"))
            margin = (norm * e32).add_(4 * U32 * cmax2 + 1e-30).add_((x_sq + cmax2) * e64).mul_(2.0)
            lo, hi = v1.double().add_(x_sq), v2.double().add_(x_sq)
            labels[s:e] = l1
            d1[s:e] = (lo + margin).clamp_min_(0.0)
            d2[s:e] = (hi - margin).clamp_min_(0.0)
            unsure = torch.nonzero(hi - lo <= 2 * margin).squeeze(1)
            if unsure.numel():
                pos = unsure + s
                exact = pos if rows is None else rows[pos]
                labels[pos], d1[pos], d2[pos] = _two_nearest(self.x, self.x_sq, centres, c_sq, chunk_elems, exact)
        return labels, d1, d2

    def keep(self, screen: _SeedScreen, centres: torch.Tensor, c_sq: torch.Tensor, chunk_elems: int,
             rows: torch.Tensor | None, own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As __call__, for rows that had the centres `own`, from the seeding screen's rank-p lower bounds
        (float32, slack included). With u = ||x - c_own||^2 (direct, float64, within d = 1e-12 (||x||^2 +
        max||c||^2) of exact), E = err64 and T = u + d + 2 (E + d): the centres whose bound is at most T
        are the row's candidates (own among them); every other centre is exactly farther than T. One
        candidate: the row keeps `own`. Several (a few, on the rows near a boundary): their direct
        distances; a nearest one more than 2 (E + d) below the others is the float64 pass's label too.
        Ties and near-ties go to _two_nearest. Bounds for Hamerly's test: the nearest's direct distance
        + d (or T) and the smaller of the second's - d and the other centres' least bound."""
        terms = screen.centre_terms(centres, c_sq)
        if terms is None:
            return self(centres, c_sq, chunk_elems, rows)
        zc, ac = terms
        if self.zrows is None:
            self.zrows = torch.empty((self.block.shape[0], zc.shape[1]), dtype=torch.float32)
        n = self.x.shape[0] if rows is None else rows.shape[0]
        labels, d1, d2 = own.clone(), torch.empty(n, dtype=self.x.dtype), torch.empty(n, dtype=self.x.dtype)
        cmax2 = float(c_sq.max())
        pair_rows, pair_centres = [], []
        for s in range(0, n, self.step):
            e = min(n, s + self.step)
            r = torch.arange(s, e) if rows is None else rows[s:e]
            zr = torch.index_select(screen.z, 0, r, out=self.zrows[:e - s])
            blk = torch.addmm(ac[None], zr, zc.T, alpha=-2.0, out=self.block[:e - s])
            scale = (self.x_sq[r] + cmax2)
            delta = scale * 1e-12
            top = self._own_dist(centres, r, own[s:e]).add_(delta).add_((scale * self.e64 + delta).mul_(2.0))
            # bound <= T, in float32: T - a rounded up (1e-6 relative is far above float32's rounding)
            thr = (top - screen.a[r]).add_(((top - screen.a[r]).abs_() + 1e-30).mul_(1e-6)).float()
            blk.scatter_(1, own[s:e, None], float("inf"))  # the other centres
            low = torch.amin(blk, dim=1, out=self.v1[:e - s])
            d1[s:e], d2[s:e] = top, low.double().add_(screen.a[r]).clamp_min_(0.0)
            several = torch.nonzero(low <= thr).squeeze(1)
            if several.numel():
                rr, cc = torch.nonzero(blk[several] <= thr[several, None], as_tuple=True)
                pair_rows += [several + s, several[rr] + s]
                pair_centres += [own[s:e][several], cc]
        if pair_rows:
            pos, order = torch.sort(torch.cat(pair_rows), stable=True)
            self._resolve(centres, c_sq, chunk_elems, rows, cmax2, pos, torch.cat(pair_centres)[order],
                          labels, d1, d2)
        return labels, d1, d2

    def _resolve(self, centres: torch.Tensor, c_sq: torch.Tensor, chunk_elems: int, rows: torch.Tensor | None,
                 cmax2: float, pos: torch.Tensor, cand: torch.Tensor, labels: torch.Tensor, d1: torch.Tensor,
                 d2: torch.Tensor) -> None:
        """keep's rows with several candidates: pairs (pos, cand), sorted by pos."""
        r = pos if rows is None else rows[pos]
        dist = self._own_dist(centres, r, cand)
        which, first = torch.unique_consecutive(pos, return_inverse=True)
        u = which.numel()
        best = torch.full((u,), float("inf"), dtype=dist.dtype).scatter_reduce_(0, first, dist, "amin")
        is_best = dist == best[first]
        ties = torch.bincount(first[is_best], minlength=u)
        second = torch.full((u,), float("inf"), dtype=dist.dtype).scatter_reduce_(
            0, first[~is_best], dist[~is_best], "amin")
        scale = self.x_sq[which if rows is None else rows[which]] + cmax2
        delta = scale * 1e-12
        sure = (ties == 1) & (second - best > (scale * self.e64 + delta).mul_(2.0))
        win = torch.zeros(u, dtype=torch.long)
        win[first[is_best]] = cand[is_best]
        labels[which[sure]] = win[sure]
        d1[which[sure]] = (best + delta)[sure]
        d2[which[sure]] = torch.minimum(second - delta, d2[which])[sure].clamp_min(0.0)
        unsure = which[~sure]
        if unsure.numel():
            labels[unsure], d1[unsure], d2[unsure] = _two_nearest(
                self.x, self.x_sq, centres, c_sq, chunk_elems, unsure if rows is None else rows[unsure])

    def half_gap(self, centres: torch.Tensor, c_sq: torch.Tensor) -> torch.Tensor:
        """A lower bound on half the distance from each centre to its nearest other one (Hamerly's s):
        float32 squared distances less their error bound (as err32 with ||x|| = max||c||)."""
        c32, csq32, k = self.c32.copy_(centres), c_sq.float()[None], centres.shape[0]
        low = torch.empty(k, dtype=torch.float32)
        for s in range(0, k, self.gaps.shape[0]):
            e = min(k, s + self.gaps.shape[0])
            gap = torch.addmm(csq32, c32[s:e], c32.T, alpha=-2.0, out=self.gaps[:e - s])
            gap[torch.arange(e - s), torch.arange(s, e)] = float("inf")
            torch.amin(gap, dim=1, out=low[s:e])
        cmax2 = float(c_sq.max())
        low = low.double().add_(c_sq).sub_(2 * ((self.e32 + 4 * U32) * cmax2 + 1e-30))
        return low.clamp_min_(0.0).sqrt_().mul_(0.5)


    def _own_dist(self, centres: torch.Tensor, r: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """||x_r - c_own||^2 in float64, in blocks of reused buffers."""
        out = torch.empty(r.shape[0], dtype=self.x.dtype)
        step = self.own.shape[0]
        for s in range(0, r.shape[0], step):
            e = min(r.shape[0], s + step)
            diff = torch.index_select(centres, 0, own[s:e], out=self.own[:e - s])
            diff.sub_(torch.index_select(self.x, 0, r[s:e], out=self.xrows[:e - s]))
            torch.sum(diff.mul_(diff), dim=1, out=out[s:e])
        return out

    def inertia(self, centres: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """(sum of ||x - c_label||^2, a bound on its distance from the float64 pass's sum of the same:
        1e-10 sum(||x||^2 + ||c_label||^2), a hundred times the rounding of either sum)."""
        total = 0.0
        for s in range(0, self.x.shape[0], self.own.shape[0]):
            e = min(self.x.shape[0], s + self.own.shape[0])
            diff = torch.index_select(centres, 0, labels[s:e], out=self.own[:e - s]).sub_(self.x[s:e])
            total += float(diff.mul_(diff).sum())
        scale = float(self.x_sq.sum()) + float((centres * centres).sum(1)[labels].sum())
        return total, 1e-10 * scale


def _labels32(x: torch.Tensor, x_sq: torch.Tensor, k: int, chunk_elems: int) -> _Float32Labels | None:
    if (x.device.type != "cpu" or x.shape[0] * k * x.shape[1] < LLOYD_MIN_WORK or k < 2
            or not bool(torch.isfinite(x_sq).all()) or float(x_sq.max()) > 1e30):
        return None
    return _Float32Labels(x, x_sq, k, chunk_elems)


def kmeans(x: torch.Tensor, k: int, rng: np.random.Generator, n_init: int = 1, max_iter: int = 100,
           tol: float = 1e-6, init: torch.Tensor | None = None,
           chunk_elems: int = 1 << 21, workers: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means: (centres (k, D), labels (N,)) of the restart with the lowest inertia; it stops
    when the centres move less than tol x the summed feature variance (squared). `init` (k, D): one
    run from these centres instead of k-means++ restarts. An empty cluster keeps its previous centre.

    Each iteration skips the rows whose nearest centre cannot have changed (Hamerly 2010: an upper
    bound on the distance to the own centre, a lower bound on the second nearest, both moved by the
    centre shifts, and half the gap between centres), with a safety margin for rounding; the others
    get the full distance pass. The labels are those of full passes (tests/test_clustering_fast.py).
    On CPU from LLOYD_MIN_WORK on, the passes label in float32 and recompute in float64 only the rows
    float32 cannot decide (_Float32Labels); with the seeding's screen, a checked row first tries to keep
    its centre on the rank-p bound (_Float32Labels.keep) and Hamerly's half gaps are skipped (without
    it they come from float32, less their error bound); restarts are compared on sum ||x - c||^2, whose
    difference from the float64
    pass's sum is bounded: within that bound, on the float64 pass's sums. The same centres and labels
    (tests/test_kmeans_fast.py); (k, D) buffers are reused across iterations.
    On CPU each restart runs on one torch thread (single_thread): its passes are many operations of a few
    milliseconds, and on this loaded 2-core VM two threads made one restart 10-15 times slower (3.3 s
    against 33-50 s). Restarts run side by side instead, on `workers` threads (default: torch's thread
    count on CPU, 1 elsewhere), each on its own buffers (_restarts: the same draws, compared in restart
    order, so the result does not depend on `workers`)."""
    if workers is None:
        workers = torch.get_num_threads() if x.device.type == "cpu" else 1
    with single_thread() if x.device.type == "cpu" else nullcontext():
        return _kmeans(x, k, rng, n_init, max_iter, tol, init, chunk_elems, max(1, int(workers)))


class _Buffers:
    """One restart's working memory: the (k, D) centre buffers and the screen's and float32 labeller's
    blocks (shared read-only data, own scratch), one set per worker thread."""

    def __init__(self, x: torch.Tensor, k: int, fast: _Float32Labels | None, screen: _SeedScreen | None):
        # (k, D) buffers reused by every iteration: a fresh 4 MB tensor per operation costs page faults
        self.cur, self.nxt, self.sums, self.move = (torch.empty((k, x.shape[1]), dtype=x.dtype, device=x.device)
                                                    for _ in range(4))
        self.fast, self.screen = fast, screen

    def fresh(self) -> _Buffers:
        """Another set for another thread: the same shapes, the same read-only data."""
        return _Buffers(self.cur, self.cur.shape[0], self.fast and self.fast.fresh(),
                        self.screen and self.screen.fresh())


def _kmeans(x: torch.Tensor, k: int, rng: np.random.Generator, n_init: int, max_iter: int, tol: float,
            init: torch.Tensor | None, chunk_elems: int, workers: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    x_sq = (x * x).sum(1)
    var = x.var(dim=0).sum().clamp_min(1e-30)
    tau = 1e-7 * float(x_sq.max().sqrt()) if x.shape[0] else 0.0  # rounding of distances from the norm expansion
    fast = _labels32(x, x_sq, k, chunk_elems)
    restarts = 1 if init is not None else max(1, n_init)
    screen = _seed_screen(x, x_sq, k)
    bufs = _Buffers(x, k, fast, screen)

    def run(g: np.random.Generator | None, b: _Buffers) -> tuple:
        return _restart(x, x_sq, k, g, init, max_iter, tol, var, tau, chunk_elems, b, restarts > 1)

    if restarts == 1:
        return run(rng, bufs)[:2]
    best = None
    for centres, labels, key in _restarts(run, rng, restarts, bufs, x.shape[0], k,
                                          workers if x.device.type == "cpu" else 1):
        if fast is None:
            if best is None or key < best[0]:
                best = (key, centres, labels)
            continue
        total, err = key
        if best is None:
            best = (total, centres, labels, err)
        elif abs(total - best[0]) <= err + best[3]:  # too close to call: the float64 pass's sums decide
            if float(assign(x, centres, chunk_elems, x_sq)[1].sum()) < float(
                    assign(x, best[1], chunk_elems, x_sq)[1].sum()):
                best = (total, centres, labels, err)
        elif total < best[0]:
            best = (total, centres, labels, err)
    return best[1], best[2]


def _seeding_draws(rng: np.random.Generator, n: int, k: int) -> np.random.Generator:
    """A copy of rng advanced past one k-means++ seeding's draws: rng.integers(n) for the first centre,
    one uniform for each next one (_draw; rng.choice draws one too). Only a step whose weights all
    vanish (rng.integers instead) draws otherwise; _restarts checks each restart's actual state."""
    g = copy.deepcopy(rng)
    g.integers(n)
    g.random(max(0, k - 1))
    return g


def _same_state(a: dict, b: dict) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[key], b[key]) for key in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return a == b


def _restarts(run, rng: np.random.Generator, restarts: int, bufs: _Buffers, n: int, k: int, workers: int):
    """run(generator, buffers) for each restart, yielded in restart order, with the draws of running them
    one after another on rng (left as they would leave it). With several workers, restart r + 1 starts
    from the state its predecessor's seeding is predicted to leave (_seeding_draws) while r runs; a
    restart whose actual final state differs from that prediction sends its successors back to run
    again from the actual state, so the results are those of the sequential loop whatever happens."""
    workers = min(workers, restarts)
    if workers == 1:
        for _ in range(restarts):
            yield run(rng, bufs)
        return
    free = queue.SimpleQueue()
    free.put(bufs)
    for _ in range(workers - 1):
        free.put(bufs.fresh())

    def task(g: np.random.Generator) -> tuple:
        b = free.get()
        try:
            return run(g, b), g
        finally:
            free.put(b)

    done = 0
    with one_thread_workers(workers) as pool:  # each restart on one torch thread, as the caller's
        while done < restarts:
            starts = [copy.deepcopy(rng)]
            for _ in range(done + 1, restarts):
                starts.append(_seeding_draws(starts[-1], n, k))
            predicted = [g.bit_generator.state for g in starts]  # (the workers advance the generators)
            futures = [pool.submit(task, g) for g in starts]
            for i, fut in enumerate(futures):
                result, g = fut.result()
                rng.bit_generator.state = g.bit_generator.state
                done += 1
                yield result
                if i + 1 < len(futures) and not _same_state(g.bit_generator.state, predicted[i + 1]):
                    for later in futures[i + 1:]:
                        later.cancel()
                    wait(futures[i + 1:])
                    break


def _restart(x: torch.Tensor, x_sq: torch.Tensor, k: int, rng: np.random.Generator | None,
             init: torch.Tensor | None, max_iter: int, tol: float, var: torch.Tensor, tau: float, chunk_elems: int,
             b: _Buffers, several: bool) -> tuple:
    """One restart: (centres, labels, key) with key the float64 pass's inertia (no float32 labeller) or
    the labeller's (inertia, error bound), for the comparison of several restarts (None for one)."""
    fast, screen = b.fast, b.screen
    nearest = fast or (lambda c, c_sq, chunk, rows=None: _two_nearest(x, x_sq, c, c_sq, chunk, rows))
    cur, nxt, sums, move = b.cur, b.nxt, b.sums, b.move
    cur.copy_(init.double() if init is not None else kmeans_pp(x, k, rng, x_sq, screen))
    centres = cur
    c_sq = torch.mul(centres, centres, out=move).sum(1)
    labels, d1, d2 = nearest(centres, c_sq, chunk_elems)
    upper, lower = d1.sqrt(), d2.sqrt()
    for it in range(max_iter):
        torch.zeros((k, x.shape[1]), out=sums).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        new = torch.where(counts[:, None] > 0, sums.div_(counts.clamp_min(1)[:, None]), centres,
                          out=nxt if centres is cur else cur)
        torch.sub(new, centres, out=move).pow_(2)
        shift = move.sum()
        centres = new
        if shift <= tol * var or it == max_iter - 1:
            break
        c_sq = torch.mul(centres, centres, out=sums).sum(1)
        delta = move.sum(1).sqrt_()
        upper.add_(delta[labels])
        lower.sub_(delta.max())
        if fast is not None and screen is not None:
            bound = lower  # the half gaps (a k x k x D product) would save less than they cost
        else:
            gap = _half_gap(centres, c_sq, chunk_elems) if fast is None else fast.half_gap(centres, c_sq)
            bound = torch.maximum(lower, gap[labels])
        check = upper.mul(1 + 1e-9).add_(tau) >= bound
        rows = torch.nonzero(check).squeeze(1)
        if rows.numel() == 0:
            continue
        if fast is not None and screen is not None:
            lab, r1, r2 = fast.keep(screen, centres, c_sq, chunk_elems, rows, labels[rows])
        else:
            lab, r1, r2 = nearest(centres, c_sq, chunk_elems, rows)
        labels[rows], upper[rows], lower[rows] = lab, r1.sqrt(), r2.sqrt()
    c_sq = torch.mul(centres, centres, out=move).sum(1)
    if fast is not None:
        labels = (fast(centres, c_sq, chunk_elems) if screen is None
                  else fast.keep(screen, centres, c_sq, chunk_elems, None, labels))[0]
    if not several:
        return centres.clone(), labels if fast is not None else assign(x, centres, chunk_elems, x_sq)[0], None
    if fast is None:
        labels, d = assign(x, centres, chunk_elems, x_sq)
        return centres.clone(), labels, float(d.sum())
    return centres.clone(), labels, fast.inertia(centres, labels)


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
