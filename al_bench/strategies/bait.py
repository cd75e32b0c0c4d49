"""BAIT (Ash, Goel, Krishnamurthy & Kakade, "Gone Fishing: Neural Active Learning with Fisher
Embeddings", NeurIPS 2021, arXiv:2106.09675).

Picks the batch S minimising tr((M_S)^-1 F): F is the average last-layer Fisher information over the
pool (labeled and candidates), and, as in the authors' code (JordanAsh/badge,
query_strategies/bait_sampling.py), M_S = lambda I + 1/(|L| + k) sum_{x in L} I(x) + k/(|L| + k)
sum_{x in S} I(x): each labeled point weighs 1/(|L| + k), each pick k/(|L| + k), so the batch's
Fisher counts as much as a mean over the labeled set and the greedy trades coverage against
uncertainty (with a 1/(|L| + k) pick weight it is nearly pointwise). `lam` is the absolute ridge
lambda. The point's Fisher is I(x) = sum_y p_y g_y g_y^T with g_y = (p - onehot(y)) (x) e, the
last-layer gradient for label y; it has rank <= C, and a pick's weighted Fisher is V_x V_x^T with
V_x = sqrt(k / (|L| + k)) B_x (x) e, columns B_x[:, y] = sqrt(p_y) (p - onehot(y)). As in the
code the greedy goes forward to `oversample` * k points (each step the largest trace decrease,
Woodbury on a rank-C update), then backward, removing the point whose removal raises the trace
least, down to k; the result keeps the forward order.

Low-rank form (the open choice): a step's score of candidate x is tr((I + S_x)^-1 R_x) (forward;
I - S_x backward) with the c x c blocks S_x = V_x^T A V_x and R_x = V_x^T X V_x, A = M^-1, X = A F A.
A and X (C d x C d) are kept, updated by Woodbury on each pick (rank c for A, 2c for X). The score
is at most tr(R_x) forward and at least tr(R_x) backward (0 <= S_x < I), so a step computes exact scores
only for the EXACT_FIRST most promising bounds and every row whose bound reaches the best of them (the
same pick as exact scores everywhere; ~50 per step on the 10k bench). Every row's tr(R_x) is kept up to date through
B_x B_x^T = k/(|L| + k) (diag(q) + s p p^T - p q^T - q p^T) (q = p on the kept labels, s = sum(q)): a
pick changes it by row sums of one (N, d) x (d, 2 C c) product (no per-candidate c x c product). The
screened rows' S_x, R_x come from A and X, and stay (updated from the same product) while the row keeps
being screened in ("hot", EVICT steps). X and every tr(R_x) are rebuilt every RESYNC steps so that the
updates' rounding does not pile up. Two named reductions (ours, not the authors') keep the blocks small:
the embedding is projected on its top `proj_dim` uncentred principal directions (d = min(D, proj_dim);
the Fisher restricted to that subspace of the last layer), and each point's Fisher keeps its
`top_classes` most probable labels (c = min(C, top_classes)). With proj_dim >= D and top_classes >= C
the method is the authors' exactly (the golden test checks that); F itself is always exact in the
projected space.

Cost: time O(N C^2 d^2 + (C d)^3) to set up, then O(N d C c + (C d)^2 c) per forward step (the
backward ones over the oversample k picks only), plus O(C^2 d^2 c) per screened row not yet hot and
O(d C c + C c^2) per hot row; memory O(N (C + d)) + O((C d)^2). At N = 10k, C = c = 10, d = 32 a
forward step is ~6.4e7 multiply-adds in one fp64 product (~3.5 ms on one quiet core), ~1e6 of row sums
and ~3e6 for A and X; the product's row blocks are shared among torch's threads (common/blocks.py),
each thread with its own reused buffers.

References: arXiv:2106.09675
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.blocks import BlockPool

EXACT_FIRST = 8  # a step's exact gains start from this many most promising bounds (any >= 1: the same picks)
EVICT = 32  # a hot row not screened in for this many steps leaves the hot set (any >= 0: the same picks)
RESYNC = 256  # X = A F A and every tr(R_x) recomputed every this many steps (the updates' rounding)


def project(emb: torch.Tensor, dim: int) -> torch.Tensor:
    """emb on its top `dim` uncentred principal directions (unchanged when D <= dim)."""
    if emb.shape[1] <= dim:
        return emb
    # the top eigenvectors of the (D, D) Gram matrix: the right singular vectors (up to a basis of their span,
    # to which tr(M^-1 F) and every S_x, R_x are invariant), without an SVD of the (N, D) rows
    _, vecs = torch.linalg.eigh(emb.T @ emb)
    return emb @ vecs[:, -dim:].flip(1)


def class_factors(probs: torch.Tensor, top: int) -> torch.Tensor:
    """B (N, C, c): column j is sqrt(p_y) (p - onehot(y)) for the j-th most probable label y."""
    n, c = probs.shape
    labels = probs.topk(top, dim=1).indices  # (N, c)
    b = probs[:, :, None].expand(n, c, top).clone()
    b[torch.arange(n)[:, None], labels, torch.arange(top)[None, :]] -= 1.0
    return b * probs.gather(1, labels).sqrt()[:, None, :]


def fisher_sum(probs: torch.Tensor, emb: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """sum_x (diag(p) - p p^T) (x) e e^T, the exact last-layer Fisher summed over rows: (C d, C d), in blocks
    of `block` rows (the (rows, d^2) outer products are the setup's largest arrays)."""
    n, c = probs.shape
    d = emb.shape[1]
    f = torch.zeros((c * c, d * d), dtype=probs.dtype, device=probs.device)
    for s0 in range(0, n, block):
        p, e = probs[s0:s0 + block], emb[s0:s0 + block]
        h = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        f.addmm_(h.reshape(-1, c * c).T, (e[:, :, None] * e[:, None, :]).reshape(-1, d * d))
    return f.reshape(c, c, d, d).permute(0, 2, 1, 3).reshape(c * d, c * d)


class _Greedy:
    """One forward-backward greedy's state: A = M^-1 and X = A F A (C d x C d), every row's tr(R_x) (the bound
    that screens a step's exact gains), and the hot rows' exact S_x, R_x (c x c), kept up to date while a row
    keeps being screened in (the rows near the top change little from step to step)."""

    def __init__(self, a, fisher, rows: tuple, kappa: float, top: int, chunk: int, pool: BlockPool):
        self.a, self.fisher, self.kappa, self.top, self.chunk, self.pool = a, fisher, kappa, top, chunk, pool
        self.a = a.contiguous()  # updated in place
        self.bufs: dict = {}
        self.c = rows[2].shape[1]
        self.d = rows[0].shape[1]
        self.eye = torch.eye(top, dtype=a.dtype, device=a.device)
        self.restrict(rows)

    def restrict(self, rows: tuple) -> None:
        """Work on these rows from now on: (e (N, d), B (N, C, c), p (N, C), q (N, C) = p on the top labels,
        s (N,) = sum(q)); tr(R_x) afresh, the hot set empty."""
        self.e, self.b, self.p, self.q, self.s = rows
        n = len(self.e)
        self.trr = torch.empty(n, dtype=self.a.dtype, device=self.a.device)
        self.slot = torch.full((n,), -1, dtype=torch.long, device=self.a.device)
        self.resync()

    def resync(self) -> None:
        """X = A F A and every tr(R_x) afresh, the hot set emptied: the updates' rounding does not pile up."""
        a = self.a
        a.copy_((a + a.T) / 2)
        self.x = a @ self.fisher @ a
        self.x = (self.x + self.x.T) / 2
        self.sweep(None)
        self.slot.fill_(-1)
        dev, top = a.device, self.top
        self.hot = torch.empty(0, dtype=torch.long, device=dev)
        self.used = torch.empty(0, dtype=torch.long, device=dev)
        self.hot_s = torch.empty((0, top, top), dtype=a.dtype, device=dev)
        self.hot_r = torch.empty((0, top, top), dtype=a.dtype, device=dev)

    def quad(self, mat: torch.Tensor, ix) -> torch.Tensor:
        """V_x^T mat V_x (rows, c, c) for rows ix, V_x = B_x (x) e_x, symmetrised."""
        c, d, ex, bx = self.c, self.d, self.e[ix], self.b[ix]
        t = (torch.matmul(ex, mat.view(c, d, c * d)).view(c, -1, c, d) * ex[:, None, :]).sum(3)  # e^T mat_ij e
        q = bx.transpose(1, 2) @ t.transpose(0, 1) @ bx
        return (q + q.transpose(1, 2)) / 2

    def trace(self, sl: slice) -> torch.Tensor:
        """tr(V_x^T X V_x) = kappa (sum_i q_i e^T X_ii e + s f^T X f - 2 f^T X g), f = p (x) e, g = q (x) e."""
        c, d, x, ex, p, q = self.c, self.d, self.x, self.e[sl], self.p[sl], self.q[sl]
        diag = x.view(c, d, c, d).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # X_ii (C, d, d)
        out = ((torch.matmul(ex, diag) * ex).sum(2) * q.T).sum(0)
        f = (p[:, :, None] * ex[:, None, :]).view(-1, c * d)
        xf = f @ x
        if self.top == c:  # q = p, s = 1
            return self.kappa * (out - (xf * f).sum(1))
        g = (q[:, :, None] * ex[:, None, :]).view(-1, c * d)
        return self.kappa * (out + self.s[sl] * (xf * f).sum(1) - 2 * (xf * g).sum(1))

    def exact(self, sign: float, ix: torch.Tensor, step: int) -> torch.Tensor:
        """tr((I + sign S_x)^-1 R_x) for rows ix (one batched LU solve: on one thread the cheapest of LU,
        Cholesky and inverse for 10 x 10 blocks); rows not yet hot get S_x, R_x from A and X and join."""
        new = ix[self.slot[ix] < 0]
        if len(new):
            self.slot[new] = torch.arange(len(self.hot), len(self.hot) + len(new), device=ix.device)
            self.hot = torch.cat([self.hot, new])
            self.used = torch.cat([self.used, torch.zeros_like(new)])
            self.hot_s = torch.cat([self.hot_s, self.quad(self.a, new)])
            self.hot_r = torch.cat([self.hot_r, self.quad(self.x, new)])
        sl = self.slot[ix]
        self.used[sl] = step
        s_blk = torch.add(self.eye, self.hot_s[sl], alpha=sign)
        return torch.linalg.solve_ex(s_blk, self.hot_r[sl])[0].diagonal(dim1=1, dim2=2).sum(1)

    def best(self, bound: torch.Tensor, sign: float, live: int, step: int) -> tuple[int, float]:
        """The first row of largest (forward, sign +1; backward, -1: smallest) exact gain among the `live`
        rows of finite bound: exact gains only for the EXACT_FIRST most promising bounds and then every row
        whose bound reaches the best of them (forward: tr(R_x) >= tr((I + S_x)^-1 R_x); backward: tr(R_x) <=
        tr((I - S_x)^-1 R_x); a relative margin of 1e-8 covers the bound's rounding): the same row as exact
        gains everywhere."""
        seeds = torch.topk(bound, min(EXACT_FIRST, live), largest=sign > 0).indices
        g_seed = self.exact(sign, seeds, step)
        if sign > 0:
            mask = bound >= (float(g_seed.max()) - 1e-300) / (1 + 1e-8)
            mask[seeds[int(torch.argmax(g_seed))]] = True  # even where rounding put a ~0 bound below its score
        else:
            mask = bound <= (float(g_seed.min()) + 1e-300) / (1 - 1e-8)
            mask[seeds[int(torch.argmin(g_seed))]] = True
        rows_in = torch.nonzero(mask).squeeze(1)  # ascending rows: ties go first
        g = self.exact(sign, rows_in, step)
        j = int(torch.argmax(g)) if sign > 0 else int(torch.argmin(g))
        return int(rows_in[j]), float(g[j])

    def update(self, j: int, sign: float, step: int) -> None:
        """Adds (sign +1) or removes (-1) row j: A, X by Woodbury, every tr(R_x), the hot S_x, R_x.

        With W = A V_j, U = X V_j = A F W, G = W^T F W = V_j^T X V_j, K = (I + sign S_j)^-1 = L sigma L^T
        (eigenvectors scaled by the roots of |eigenvalues|, sigma their signs): A -= sign Wl sigma Wl^T and
        X += Wl G2 Wl^T - sign (Wl sigma Ul^T + Ul sigma Wl^T), Wl = W L, Ul = U L, G2 = sigma L^T G L sigma.
        With P_x = (e_x^T Wl_i)_i and Q_x = (e_x^T Qm_i)_i (C x c, blocks i of C d rows), Qm = Wl G2 - 2 sign
        Ul sigma: tr(R_x) += <H_x P_x, Q_x>, S_x -= sign Yw sigma Yw^T, R_x += sym(Yq Yw^T), Yw = B_x^T P_x,
        Yq = B_x^T Q_x; [P_x, Q_x] for every row is one (rows, d) x (d, 2 C c) product."""
        a, x, c, d, top = self.a, self.x, self.c, self.d, self.top
        ej, bj = self.e[j], self.b[j]
        wp = (a.view(c * d * c, d) @ ej).view(c * d, c) @ bj  # A V_j, V_j = B_j (x) e_j: (C d, c)
        up = (x.view(c * d * c, d) @ ej).view(c * d, c) @ bj
        sp = bj.T @ (wp.view(c, d, top) * ej[None, :, None]).sum(1)  # V_j^T W
        gp = bj.T @ (up.view(c, d, top) * ej[None, :, None]).sum(1)  # V_j^T U
        kk = torch.linalg.inv(self.eye + sign * (sp + sp.T) / 2)
        kk = (kk + kk.T) / 2
        lam_k, vec_k = torch.linalg.eigh(kk)
        low = vec_k * lam_k.abs().sqrt()
        sig = torch.sign(lam_k)
        wl, ul = wp @ low, up @ low
        g2 = sig[:, None] * (low.T @ ((gp + gp.T) / 2) @ low) * sig[None, :]
        qm = wl @ g2 - (2 * sign) * ul * sig[None, :]
        wk = wp @ kk
        a.addmm_(wk, wp.T, alpha=-sign)  # in place, one product each (`resync` symmetrises)
        x.addmm_(torch.cat([wk, up], 1), torch.cat([gp @ wk.T - sign * up.T, -sign * wk.T], 0))
        # columns ordered (i, t, m): block i of Wl (t = 0) and of Qm (t = 1)
        mat = torch.stack([wl, qm]).view(2, c, d, top).permute(2, 1, 0, 3).reshape(d, c * 2 * top)
        self.sweep(mat)
        # the hot rows: drop j and the rows not screened in for EVICT steps, update the others
        keep = (self.hot != j) & (self.used >= step - EVICT)
        if not bool(keep.all()):
            self.slot[self.hot[~keep]] = -1
            self.hot, self.used = self.hot[keep], self.used[keep]
            self.hot_s, self.hot_r = self.hot_s[keep], self.hot_r[keep]
            self.slot[self.hot] = torch.arange(len(self.hot), device=self.hot.device)
        if len(self.hot):
            bh = self.b[self.hot]
            y = bh.transpose(1, 2) @ (self.e[self.hot] @ mat).view(-1, c, 2 * top)  # [Yw, Yq] (rows, c, 2c)
            yw, yq = y[:, :, :top], y[:, :, top:]
            self.hot_s.sub_((yw * sig) @ yw.transpose(1, 2), alpha=sign)
            t = yq @ yw.transpose(1, 2)
            self.hot_r.add_(t, alpha=0.5).add_(t.transpose(1, 2), alpha=0.5)

    def sweep(self, mat: torch.Tensor | None) -> None:
        """Block by block of `chunk` rows (the blocks shared among the pool's threads): tr(R_x) += the change
        of a step (mat from `update`), or (mat None) tr(R_x) = tr(V_x^T X V_x) afresh."""
        c, top, chunk, trr = self.c, self.top, self.chunk, self.trr

        def work(starts: list[int]) -> None:
            if mat is not None:  # this thread's buffers, reused: no page faults for fresh blocks at every step
                key = (threading.get_ident(), self.chunk)
                if key not in self.bufs:
                    self.bufs[key] = [torch.empty(shape, dtype=trr.dtype, device=trr.device) for shape in
                                      ((chunk, 2 * c * top), (chunk, c, 2, top), (chunk, 2, top), (chunk, c, top),
                                       (chunk, top), (chunk,), (chunk,))]
                zb, wb, ppb, prb, tb, t1b, t2b = self.bufs[key]
            for s0 in starts:
                sl = slice(s0, s0 + chunk)
                if mat is None:
                    trr[sl] = self.trace(sl)
                    continue
                r = len(self.e[sl])
                z = torch.matmul(self.e[sl], mat, out=zb[:r]).view(r, c, 2, top)  # [P_x, Q_x] (rows, C, 2, c)
                pz = torch.mul(z, self.p[sl, :, None, None], out=wb[:r])
                pp = torch.sum(pz, 1, out=ppb[:r])  # [p^T P, p^T Q]
                t2 = torch.sum(torch.mul(pp[:, 0], pp[:, 1], out=tb[:r]), 1, out=t2b[:r])
                if top == c:  # q = p, s = 1: <H P, Q> / kappa = sum_i p_i <P_i, Q_i> - (p^T P).(p^T Q)
                    t1 = torch.sum(torch.mul(pz[:, :, 0], z[:, :, 1], out=prb[:r]).view(r, -1), 1, out=t1b[:r])
                    trr[sl] += self.kappa * (t1 - t2)
                    continue
                # q on the top labels: sum_i q_i <P_i, Q_i> + s (p^T P).(p^T Q) - (p^T P).(q^T Q) - (q^T P).(p^T Q)
                dq = t2 * self.s[sl]
                qz = torch.mul(z, self.q[sl, :, None, None], out=wb[:r])
                qq = torch.sum(qz, 1)
                dq += torch.mul(qz[:, :, 0], z[:, :, 1], out=prb[:r]).view(r, -1).sum(1)
                dq -= (pp[:, 0] * qq[:, 1]).sum(1) + (qq[:, 0] * pp[:, 1]).sum(1)
                trr[sl] += self.kappa * dq

        self.pool.run(work, list(range(0, len(self.e), chunk)))


def bait_batch(probs: torch.Tensor, emb: torch.Tensor, is_labeled: np.ndarray, k: int, lam: float = 1.0,
               oversample: int = 2, top_classes: int = 10, proj_dim: int = 32,
               chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Positions (among the unlabeled rows) picked by BAIT's forward-backward greedy, and the trace change
    of each step (forward: the decrease of tr(M^-1 F) when adding the pick; backward: its increase when
    removing the dropped point)."""
    probs, emb = probs.double(), project(emb.double(), proj_dim)
    n_all, c = probs.shape
    d = emb.shape[1]
    dev = probs.device
    lab = torch.as_tensor(is_labeled, device=dev)
    rows = torch.nonzero(~lab).squeeze(1)
    scale = float(int(lab.sum()) + k)
    fisher = fisher_sum(probs, emb) / n_all
    m0 = lam * torch.eye(c * d, dtype=torch.float64, device=dev) + fisher_sum(probs[lab], emb[lab]) / scale
    a = torch.linalg.inv(m0)
    a = (a + a.T) / 2
    top = min(top_classes, c)
    p = probs[rows]
    b = class_factors(p, top) * np.sqrt(k / scale)  # (N, C, c): a pick weighs k / (|L| + k)
    # H_x = B_x B_x^T = k / (|L| + k) (diag(q) + s p p^T - p q^T - q p^T), q = p on the top labels, s = sum(q):
    # the structure that turns tr(V_x^T D V_x) for a low-rank D into row sums (no per-candidate c x c product)
    labels = p.topk(top, dim=1).indices
    q = torch.zeros_like(p).scatter_(1, labels, p.gather(1, labels))
    n = len(rows)
    with BlockPool() as pool:  # the threads take separate blocks (see common/blocks.py)
        g = _Greedy(a, fisher, (emb[rows], b, p, q, q.sum(1)), k / scale, top, chunk, pool)
        order: list[int] = []
        gains: list[float] = []
        n_fwd = min(oversample * k, n)
        bound = torch.empty(n, dtype=torch.float64, device=dev)
        chosen = torch.zeros(n, dtype=torch.bool, device=dev)
        for step in range(n_fwd):
            if step and step % RESYNC == 0:
                g.resync()
            bound.copy_(g.trr)  # tr(R_x), an upper bound of the forward gain
            bound[chosen] = -float("inf")
            j, best = g.best(bound, +1.0, n - step, step)
            order.append(j)
            gains.append(best)
            chosen[j] = True
            if step + 1 < n_fwd or len(order) > k:
                g.update(j, +1.0, step)
        if len(order) > k:  # backward over the picks only, in row order (ties go to the first, as before)
            idx = chosen.nonzero().squeeze(1)
            g.restrict(tuple(t[idx] for t in (g.e, g.b, g.p, g.q, g.s)))
            alive = torch.ones(len(idx), dtype=torch.bool, device=dev)
            step = 0
            while len(order) > k:
                if step and step % RESYNC == 0:
                    g.resync()
                bound = torch.where(alive, g.trr, float("inf"))  # tr(R_x), a lower bound of the increase
                j, worst = g.best(bound, -1.0, int(alive.sum()), step)
                order.remove(int(idx[j]))
                gains.append(worst)
                alive[j] = False
                if len(order) > k:
                    g.update(j, -1.0, step)
                step += 1
        return rows[order].cpu().numpy().astype(np.int64), np.asarray(gains)


def bait_select(probs: torch.Tensor, emb: torch.Tensor, is_labeled: np.ndarray, k: int, lam: float = 1.0,
                oversample: int = 2, top_classes: int = 10, proj_dim: int = 32, chunk: int = 1024) -> np.ndarray:
    """Positions (among the unlabeled rows) picked by BAIT's forward-backward greedy."""
    return bait_batch(probs, emb, is_labeled, k, lam, oversample, top_classes, proj_dim, chunk)[0]


class Bait(Strategy):
    """Fisher-information batch selection, forward to oversample x k then backward to k."""

    def __init__(self, lam: float = 1.0, oversample: int = 2, top_classes: int = 10, proj_dim: int = 32):
        if float(lam) <= 0 or int(oversample) < 1 or int(top_classes) < 1 or int(proj_dim) < 1:
            raise ConfigError("strategy.lam must be > 0 and oversample, top_classes, proj_dim >= 1; got "
                              f"{lam}, {oversample}, {top_classes}, {proj_dim}")
        self.lam, self.oversample = float(lam), int(oversample)
        self.top_classes, self.proj_dim = int(top_classes), int(proj_dim)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        rows, is_labeled = ctx.with_labeled(candidates)
        preds = ctx.predict(rows)
        pos = bait_select(preds["probs"], preds["embedding"], is_labeled, k, self.lam, self.oversample,
                          self.top_classes, self.proj_dim)
        return rows[pos]
