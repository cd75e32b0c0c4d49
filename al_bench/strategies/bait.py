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
I - S_x backward) with the c x c blocks S_x = V_x^T A V_x and R_x = V_x^T A F A V_x, A = M^-1. Only
A (C d x C d) and these (N, c, c) blocks are kept: a pick's rank-c Woodbury update of A changes every
S_x and R_x by quadratic forms in W_p^T V_x and (A F W_p)^T V_x (W_p = A V_p), which one (N, d) x
(d, 3 c C) product and two batched c x c products give, using the Kronecker structure of V_x (no
per-candidate W_x = A V_x is stored or updated). Two named reductions (ours, not the authors') keep
the blocks small: the embedding is projected on its top `proj_dim` uncentred principal directions
(d = min(D, proj_dim); the Fisher restricted to that subspace of the last layer), and each point's
Fisher keeps its `top_classes` most probable labels (c = min(C, top_classes)). With proj_dim >= D
and top_classes >= C the method is the authors' exactly (the golden test checks that); F itself is
always exact in the projected space.

Cost: time O(N C^2 d^2 + (C d)^3) to set up, then O(N (d C c + C c^2 + c^3)) per step for
(1 + oversample) k steps (the backward ones over the oversample k picks only); memory O(N (C c + d + c^2))
+ O((C d)^2). At N = 10k, C = c = 10, d = 32 a forward step is ~1.3e8 multiply-adds (the (N, d) x
(d, 300) product 1e8, the two batched 10 x 10 products 6e7), the exact gains (one 10 x 10 LU solve
each) only for the rows whose bound tr(R_x) reaches the best of the 32 largest bounds (~7 % on random
inputs; the same pick as all of them), 16 MB of blocks. The greedy's blocks are shared among torch's
threads (common/blocks.py).

References: arXiv:2106.09675
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.blocks import BlockPool

EXACT_FIRST = 32  # a forward step's exact gains start from this many largest bounds (any >= 1: the same picks)


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


def fisher_sum(probs: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """sum_x (diag(p) - p p^T) (x) e e^T, the exact last-layer Fisher summed over rows: (C d, C d)."""
    n, c = probs.shape
    d = emb.shape[1]
    h = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    ee = emb[:, :, None] * emb[:, None, :]
    f = (h.reshape(n, c * c).T @ ee.reshape(n, d * d)).reshape(c, c, d, d)
    return f.permute(0, 2, 1, 3).reshape(c * d, c * d)


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
    b = class_factors(probs[rows], top) * np.sqrt(k / scale)  # (N, C, c): a pick weighs k / (|L| + k)
    e = emb[rows]
    n = len(rows)

    def quad(mat: torch.Tensor) -> torch.Tensor:
        """V_x^T mat V_x (N, c, c) for every candidate, V_x = B_x (x) e_x, in blocks of `chunk` rows."""
        blocks = mat.view(c, d, c, d).permute(1, 0, 2, 3).reshape(d, c * c * d)
        out = torch.empty((n, top, top), dtype=torch.float64, device=dev)
        for s0 in range(0, n, chunk):
            ex, bx = e[s0:s0 + chunk], b[s0:s0 + chunk]
            t = ((ex @ blocks).view(-1, c, c, d) * ex[:, None, None, :]).sum(3)  # e^T mat_ij e: (rows, C, C)
            out[s0:s0 + chunk] = bx.transpose(1, 2) @ t @ bx
        return out

    # Only the (N, c, c) blocks S_x = V_x^T A V_x and R_x = V_x^T A F A V_x enter a step's score
    # tr((I + S_x)^-1 R_x), and a pick's rank-c Woodbury update of A = M^-1 changes them through
    # W_p^T V_x and (A F W_p)^T V_x = (W_x^T F W_p)^T, which A (C d x C d) gives directly: no per-candidate
    # W_x = A V_x (C d x c, 256 MB at 10k) is kept or updated.
    s_mat = quad(a)
    s_mat = (s_mat + s_mat.transpose(1, 2)) / 2
    r_mat = quad(a @ fisher @ a)
    r_mat = (r_mat + r_mat.transpose(1, 2)) / 2
    eye = torch.eye(top, dtype=torch.float64, device=dev)

    def prepare(bp: torch.Tensor, ep: torch.Tensor, sp: torch.Tensor, sign: float) -> tuple:
        """The step's (d, 3 c C) factor and signs for adding (sign +1) or removing (-1) point p; updates A.

        With Q_x = W_p^T V_x and Z_x = (A F W_p)^T V_x, the updates are S_x -= sign Q^T K Q and
        R_x += Q^T K G K Q - sign (Z^T K Q + Q^T K Z), K = (I + sign S_p)^-1, G = W_p^T F W_p. K = L sigma L^T
        (eigenvectors scaled by the roots of |eigenvalues|, sigma their signs: all + when I +- S_p is positive
        definite) is folded into the products: Y = L^T Q, Yt = sigma Y, U = L^T Z, G' = L^T G L give
        S_x -= sign Y^T Yt and R_x += Yt^T G' Yt - sign (U^T Yt + Yt^T U), one product of
        [Y^T; U^T; (G' Yt)^T] with Yt, and [Y; U; G' Yt] = mat^T V_x for one (C d, 3c) matrix mat."""
        nonlocal a
        vp = (bp[:, None, :] * ep[None, :, None]).reshape(c * d, top)
        wp = a @ vp
        gp = fisher @ wp
        kk = torch.linalg.inv(eye + sign * sp)
        kk = (kk + kk.T) / 2
        lam_k, vec_k = torch.linalg.eigh(kk)
        low = vec_k * lam_k.abs().sqrt()
        sig = torch.sign(lam_k)
        wl = wp @ low
        g2 = low.T @ (wp.T @ gp) @ low
        mat = torch.cat([wl, a @ (gp @ low), wl @ (sig[:, None] * g2)], 1)
        a = a - sign * (wp @ kk) @ wp.T
        a = (a + a.T) / 2
        # mat^T V_x = (e_x^T mat_i)_i B_x: the columns ordered (j, i) for one (rows, d) x (d, 3c C) product
        return mat.view(c, d, 3 * top).permute(1, 2, 0).reshape(d, 3 * top * c), sig, sign

    def gain(sign: float, s_blk: torch.Tensor, r_blk: torch.Tensor) -> torch.Tensor:
        """tr((I + sign S_x)^-1 R_x) (one batched LU solve: on one thread the cheapest of LU, Cholesky and
        inverse for 10 x 10 blocks)."""
        return torch.linalg.solve_ex(torch.add(eye, s_blk, alpha=sign), r_blk)[0].diagonal(dim1=1, dim2=2).sum(1)

    def sweep(ex, bx, sx, rx, upd: tuple | None, gain_sign: float | None, out: torch.Tensor) -> None:
        """Block by block of `chunk` rows (kept in cache): apply a step's update (from `prepare`) to S and R
        in place, then write the next step's gains (sign `gain_sign`; forward: their upper bounds tr(R_x))
        into `out`, the blocks shared among the pool's threads."""

        def work(starts: list[int]) -> None:
            for s0 in starts:
                sl = slice(s0, s0 + chunk)
                s_blk, r_blk = sx[sl], rx[sl]
                if upd is not None:
                    mat_t, sig, sign = upd
                    blocks = (ex[sl] @ mat_t).view(-1, 3 * top, c) @ bx[sl]  # [Y; U; G' Yt] (rows, 3c, c)
                    lhs = blocks.view(-1, 3, top, top).transpose(2, 3).reshape(-1, 3 * top, top)
                    yt = blocks[:, :top] if bool((sig > 0).all()) else blocks[:, :top] * sig[:, None]
                    prod = lhs @ yt  # [Y^T Yt; U^T Yt; Yt^T G' Yt]
                    s_blk.sub_(prod[:, :top], alpha=sign)
                    u_yt = prod[:, top:2 * top]
                    r_blk.add_(prod[:, 2 * top:]).sub_(u_yt, alpha=sign).sub_(u_yt.transpose(1, 2), alpha=sign)
                if gain_sign is None:
                    continue
                if gain_sign > 0:  # forward: the bound tr(R_x) >= tr((I + S_x)^-1 R_x) (S_x, R_x >= 0)
                    out[sl] = r_blk.diagonal(dim1=1, dim2=2).sum(1)
                else:
                    out[sl] = gain(gain_sign, s_blk, r_blk)

        pool.run(work, list(range(0, len(ex), chunk)))

    def forward_pick(bound: torch.Tensor, chosen: torch.Tensor) -> tuple[int, float]:
        """The first row of largest gain among the unchosen: exact gains only where the bound tr(R_x) reaches
        the best exact gain of the EXACT_FIRST largest bounds (no row below it can win; a relative margin of
        1e-9 covers rounding), the same pick as exact gains everywhere."""
        bound[chosen] = -float("inf")
        top_rows = torch.topk(bound, min(EXACT_FIRST, n - int(chosen.sum()))).indices
        best = float(gain(+1.0, s_mat[top_rows], r_mat[top_rows]).max())
        rows_in = torch.nonzero(bound * (1 + 1e-9) + 1e-300 >= best).squeeze(1)  # ascending: ties go first
        exact = gain(+1.0, s_mat[rows_in], r_mat[rows_in])
        j = int(torch.argmax(exact))
        return int(rows_in[j]), float(exact[j])

    with BlockPool() as pool:  # the threads take separate blocks (see common/blocks.py)
        chosen = torch.zeros(n, dtype=torch.bool, device=dev)
        order: list[int] = []
        gains: list[float] = []
        n_fwd = min(oversample * k, n)
        bound = torch.empty(n, dtype=torch.float64, device=dev)
        sweep(e, b, s_mat, r_mat, None, +1.0, bound)
        for step in range(n_fwd):
            p, best = forward_pick(bound, chosen)
            order.append(p)
            gains.append(best)
            chosen[p] = True
            upd = prepare(b[p], e[p], s_mat[p], +1.0)
            sweep(e, b, s_mat, r_mat, upd, +1.0 if step + 1 < n_fwd else None, bound)
        if len(order) > k:  # backward over the picks only, in row order (ties go to the first, as before)
            idx = chosen.nonzero().squeeze(1)
            ec, bc, sc, rc = e[idx], b[idx], s_mat[idx], r_mat[idx]
            alive = torch.ones(len(idx), dtype=torch.bool, device=dev)
            g = torch.empty(len(idx), dtype=torch.float64, device=dev)
            sweep(ec, bc, sc, rc, None, -1.0, g)
            while len(order) > k:
                g[~alive] = float("inf")
                j = int(torch.argmin(g))
                order.remove(int(idx[j]))
                gains.append(float(g[j]))
                alive[j] = False
                upd = prepare(bc[j], ec[j], sc[j], -1.0)
                sweep(ec, bc, sc, rc, upd, -1.0 if len(order) > k else None, g)
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
