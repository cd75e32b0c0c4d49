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

Low-rank form (the open choice): with A = M^-1, every candidate keeps W_x = A V_x (C d x c), and
the c x c matrices V_x^T W_x and W_x^T F W_x; a pick updates them all from the picked W_p in
O(N C d c^2), using the Kronecker structure of V_x so V is never stored. Two named reductions (ours,
not the authors') keep this in memory for a 10k subset: the embedding is projected on its top
`proj_dim` uncentred principal directions (d = min(D, proj_dim); the Fisher restricted to that
subspace of the last layer), and each point's Fisher keeps its `top_classes` most probable labels
(c = min(C, top_classes)). With proj_dim >= D and top_classes >= C the method is the authors' exactly
(the golden test checks that); F itself is always exact in the projected space.

Cost: time O(N C^2 d^2 + (C d)^3) to set up, then O(N C d c^2) per step for (1 + oversample) k
steps; memory O(N C d c) for W (10k x 320 x 10 doubles = 256 MB at C = 10, d = 32) + O((C d)^2).

References: arXiv:2106.09675
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy


def project(emb: torch.Tensor, dim: int) -> torch.Tensor:
    """emb on its top `dim` uncentred principal directions (unchanged when D <= dim)."""
    if emb.shape[1] <= dim:
        return emb
    _, _, vh = torch.linalg.svd(emb, full_matrices=False)
    return emb @ vh[:dim].T


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


def bait_select(probs: torch.Tensor, emb: torch.Tensor, is_labeled: np.ndarray, k: int, lam: float = 1.0,
                oversample: int = 2, top_classes: int = 10, proj_dim: int = 32, chunk: int = 1024) -> np.ndarray:
    """Positions (among the unlabeled rows) picked by BAIT's forward-backward greedy."""
    probs, emb = probs.double(), project(emb.double(), proj_dim)
    n_all, c = probs.shape
    d = emb.shape[1]
    lab = torch.as_tensor(is_labeled, device=probs.device)
    rows = torch.nonzero(~lab).squeeze(1)
    scale = float(int(lab.sum()) + k)
    fisher = fisher_sum(probs, emb) / n_all
    m0 = lam * torch.eye(c * d, dtype=torch.float64, device=probs.device) + fisher_sum(probs[lab], emb[lab]) / scale
    a = torch.linalg.inv(m0)
    a = (a + a.T) / 2
    top = min(top_classes, c)
    b = class_factors(probs[rows], top) * np.sqrt(k / scale)  # (N, C, c): a pick weighs k / (|L| + k)
    e = emb[rows]
    n = len(rows)
    w = torch.empty((n, c * d, top), dtype=torch.float64, device=probs.device)
    for start in range(0, n, chunk):
        v = (b[start:start + chunk, :, None, :] * e[start:start + chunk, None, :, None]).reshape(-1, c * d, top)
        w[start:start + chunk] = a @ v

    def wt_v(wx: torch.Tensor, bx: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
        """W^T V_x (rows, c, c) from W (rows or one, C d, c), using V_x = B_x (x) e_x."""
        t = (wx.view(-1, c, d, top) * ex[:, None, :, None]).sum(2)  # (rows, C, c)
        return t.transpose(1, 2) @ bx

    s_mat = wt_v(w, b, e)
    s_mat = (s_mat + s_mat.transpose(1, 2)) / 2  # V^T A V, symmetric
    r_mat = w.transpose(1, 2) @ (fisher @ w)
    eye = torch.eye(top, dtype=torch.float64, device=probs.device)

    # reused blocks of `chunk` rows: a per-step (N, C, d, c) product or (N, C d, c) update would be a fresh
    # 256 MB allocation at 10k (page faults cost more than the arithmetic); the same numbers, row by row
    prod_buf = torch.empty((min(chunk, n), c, d, top), dtype=torch.float64, device=probs.device)
    upd_buf = torch.empty((min(chunk, n), c * d, top), dtype=torch.float64, device=probs.device)

    def wt_v_one(wp: torch.Tensor, bx: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
        """wt_v(wp[None], bx, ex) block by block into the reused buffer."""
        out = torch.empty((len(ex), top, top), dtype=torch.float64, device=probs.device)
        wv = wp.view(1, c, d, top)
        for s0 in range(0, len(ex), chunk):
            blk = prod_buf[:len(ex[s0:s0 + chunk])]
            t = torch.mul(wv, ex[s0:s0 + chunk, None, :, None], out=blk).sum(2)
            torch.matmul(t.transpose(1, 2), bx[s0:s0 + chunk], out=out[s0:s0 + chunk])
        return out

    def update(p: int, sign: float, idx: torch.Tensor | None = None) -> None:
        """Rank-c Woodbury update of every kept row after adding (sign +1) or removing (-1) point p."""
        wp = w[p].clone()
        gp = fisher @ wp
        kk = torch.linalg.inv(eye + sign * s_mat[p])
        kk = (kk + kk.T) / 2
        sel = slice(None) if idx is None else idx
        ws = w[sel]
        q = wt_v_one(wp, b[sel], e[sel])  # W_p^T V_x
        pkq = (ws.transpose(1, 2) @ gp) @ kk @ q  # (W_x^T F W_p) K Q
        r_mat[sel] += -sign * (pkq + pkq.transpose(1, 2)) + q.transpose(1, 2) @ (kk @ (wp.T @ gp) @ kk) @ q
        s_mat[sel] -= sign * q.transpose(1, 2) @ kk @ q
        if idx is None:
            wpk = wp @ kk
            for s0 in range(0, n, chunk):  # w -= sign (W_p K) Q, sign * exact for sign = +-1
                blk = torch.matmul(wpk, q[s0:s0 + chunk], out=upd_buf[:len(q[s0:s0 + chunk])])
                w[s0:s0 + chunk].sub_(blk, alpha=sign)
        else:
            w[idx] = ws - sign * ((wp @ kk) @ q)

    def gain(sign: float) -> torch.Tensor:
        return torch.linalg.solve(eye + sign * s_mat, r_mat).diagonal(dim1=1, dim2=2).sum(1)

    chosen = torch.zeros(n, dtype=torch.bool, device=probs.device)
    order: list[int] = []
    for _ in range(min(oversample * k, n)):
        g = gain(+1.0)
        g[chosen] = -float("inf")
        p = int(torch.argmax(g))
        order.append(p)
        chosen[p] = True
        update(p, +1.0)
    while len(order) > k:
        g = gain(-1.0)
        g[~chosen] = float("inf")
        p = int(torch.argmin(g))
        order.remove(p)
        chosen[p] = False
        update(p, -1.0, chosen.nonzero().squeeze(1))
    return rows[order].cpu().numpy().astype(np.int64)


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
