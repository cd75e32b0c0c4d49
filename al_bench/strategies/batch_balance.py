"""Batch-BALanCe, greedy (Zhang, Khan, Grossman & Chen, "Scalable Batch-Mode Deep Bayesian Active
Learning via Equivalence Class Annealing", ICLR 2023, arXiv:2112.13737): the batch is grown one
candidate at a time, each step adding the x maximising the BALanCe score of the batch's joint labels
(y_A, y_x), with the equivalence classes, pairs and annealed tau of `balance` (see balance.py):

    Delta(A + x) = sum_{y_A, y} pbar(y_A, y) 1/K sum_k split_k (1 - lambda_k(y_A, y) lambda'_k(y_A, y)),

lambda_k the joint probability under w_k over its maximum (the product of the per-point maxima).
As in the authors' code (zhangrenyuuchicago/BALanCe, Greedy/BALanCe_RepeatedMNIST/mc_eced_gpu.py
`delta_batch_mc_eced`, run by main_batch_mc_eced_anneal_div4.py): the first `sampling_index` picks
use the exact joint over all C^|A| configurations of the picks; from then on M =
`num_joint_samples` configurations y^m_A are drawn, each pick's label from its own mean prediction
pbar(y_i) (one torch.multinomial of M draws per pick, in pick order, and one per later pick; so from
the product of the marginals, not from the joint p(y_A)), kept for the rest of the batch, and

    Delta(A + x) ~ 1/M sum_m sum_y pbar(y | y^m_A) 1/K sum_k split_k (1 - lambda_k lambda'_k)

with pbar(y | y^m_A) = sum_j p(y^m_A | w_j) p(y | w_j) / sum_j p(y^m_A | w_j). With the same
generator state the draws, scores and picks equal theirs. Their values: M = 10,000,
sampling_index = 2, K = 100 pairs, tau = (1 - val_acc) / 4 (their CIFAR-10 clustering scripts use
sampling_index = 3 and 1/8: options). Ties go to the lowest position, as their stable sort does.

Computed without the authors' (N, K, M, C) tensor, by exchanging sums (the same value):
Delta = 1/K sum_y sum_j p_j(y | x) [W_j H - sum_k G_jk split_k b_k(y | x)], H = sum_k split_k,
b_k = lambda_k lambda'_k of x alone, W_j = mean_m Q_j(m) and G_jk = mean_m Q_j(m) a_k(m) with
Q_j(m) = p(y^m_A | w_j) / sum_j' p(y^m_A | w_j') and a_k(m) the picks' lambda_k lambda'_k (exact
phase: the sums run over all configurations, Q_j = p(y_A | w_j) / 2K). The picks' probabilities
are kept as logarithms, so long batches do not underflow (their float32 products do, for long
batches). The exact phase holds C^|A| configurations: keep `sampling_index` small (2-4).

Screened steps (`screen`, on; the same picks and scores, bit for bit, as computing every row; tested
against that in tests/test_batch_balance_fast.py). With T_x = sum_y p(y | x) b(y | x)^T >= 0 the score
is (h F(x) - second(x)) / K, F(x) = sum_j W_j psum_j(x) (cheap, O(N K)) and second(x) = sum_k
<G_:k, T_x:k> >= 0. Each row keeps lower bounds L_xk of its per-pair sums; from one step to the next
they are multiplied by r_k = min_j G_jk / G'_jk (valid for every T >= 0), and refreshed where a row's
exact score is computed. A step computes exact scores for the 64 rows of largest bound (h F - L) / K,
then for every row whose bound reaches the best of them; the bound covers float32's rounding of the
second term (4x its worst case), so a skipped row cannot be the arg-max. In the first steps the second
term decides and almost every row is computed; as the batch grows G shrinks (every pick's labels cut
more pairs) and the ranking is settled by F: ~64 rows per step. Once every a_k(m) rounds to 0 in
float32, G is 0 exactly: no product at all (see _sampled_g).

Cost per greedy step: O(M K K') for G plus O(N C K K') for the rows computed, K' <= K the split pairs
(one (b C, 2K) x (2K, K') product, in `dtype`: float32 by default, as the authors compute), plus
O(M K) for the softmax giving W and O(N K) for F, every step. Memory O(N K C + M K) plus a chunk (no
float64 copy of the (N, 2K, C) input). At N = 10k, K = 100, C = 10, K' = 100 (the bench's inputs, all
pairs split): ~16 full steps at 2e9 multiply-adds (~0.2 s each on one loaded thread), ~125 steps with
G's (2K, M) x (M, K') product (2e8) and 64 rows, then ~860 steps of softmax + F only (~30 ms on one
loaded thread); scripts/bench_select.py at 10k, k = 1,000, 2 threads of the loaded VM: 489 s -> 49.7 s,
peak 568 -> 304 MB (the picks and scores of those 1,000 steps equal the previous code's bit for bit).
Row blocks are shared among torch's threads (common/blocks.py).

References: arXiv:2112.13737
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.schema import NonNegativeFloat, NonNegativeInt, PositiveInt
from al_bench.strategies.balance import Balance, pair_ratio
from al_bench.strategies.base import SelectionContext
from al_bench.strategies.common.blocks import BlockPool, run_blocks


def _rows_second(pt: torch.Tensor, cut: torch.Tensor, g: torch.Tensor, rows: torch.Tensor | slice) -> tuple:
    """sum_{y,k} t_k(y) cut_k(y) (float, as one sum) and its per-pair sums over y, with t = sum_j p_j(y) G_jk,
    for the given rows: one (b C, 2K) x (2K, K') product (a row's numbers do not depend on the other rows)."""
    block = pt[rows]
    t = (block.reshape(-1, block.shape[2]) @ g).view(block.shape[0], block.shape[1], -1)
    prod = t * cut[rows]
    return prod.sum(dim=(1, 2)).double(), prod.sum(dim=1)


def _ratio(g: torch.Tensor, g_prev: torch.Tensor) -> torch.Tensor:
    """r_k = min_j G_jk / G'_jk over the entries with G'_jk > 0 (0 where there are none), so that
    sum_j G_jk T_jk >= r_k sum_j G'_jk T_jk for every T >= 0 (float64, rounded down by an ulp)."""
    g, g_prev = g.double(), g_prev.double()
    ratio = torch.where(g_prev > 0, g / g_prev.clamp_min(torch.finfo(torch.float64).tiny), torch.inf)
    r = ratio.amin(dim=0)
    return torch.where(torch.isfinite(r), r * (1 - 2 ** -50), torch.zeros_like(r))


def batch_balance_batch(mc_probs: torch.Tensor, split: torch.Tensor, k: int, num_joint_samples: int = 10000,
                        sampling_index: int = 2, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32, chunk: int = 1024, screen: bool = True,
                        probe: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Positions of k candidates chosen greedily by Batch-BALanCe from mc_probs (N, 2K, C) (pairs k
    and K + k) and split (K,), and each pick's score at its step.

    screen=True computes a step's exact scores only for the rows whose upper bound (h F(x) - L(x)) / K can
    reach the best exact score (see the module docstring); screen=False every row, every step (the same
    numbers for the rows computed, so the same picks)."""
    n, s2, c = mc_probs.shape
    kk = s2 // 2
    dev = mc_probs.device
    split = split.double().to(dev)
    h = float(split.sum())
    cols = torch.nonzero(split).flatten()  # only the pairs split into two classes can be cut
    pair_cols, n_cut = torch.cat([cols, cols + kk]), len(cols)
    # per row block, from float64 copies of the rows (no float64 copy of the whole (N, 2K, C) input)
    pmax = torch.empty((n, s2), dtype=torch.float64, device=dev)  # max_y p_j(y)
    psum = torch.empty((n, s2), dtype=torch.float64, device=dev)  # sum_y p_j(y), 1 for normalised rows
    pt = torch.empty((n, c, s2), dtype=dtype, device=dev)  # p_j(y)
    cut = torch.empty((n, c, n_cut), dtype=dtype, device=dev)  # b_k(y) = lambda_k lambda'_k, split_k = 1
    for start in range(0, n, chunk):
        rows = mc_probs[start:start + chunk].double()
        pmax[start:start + chunk] = rows.amax(dim=2)
        psum[start:start + chunk] = rows.sum(dim=2)
        pt[start:start + chunk] = rows.transpose(1, 2)
        cut[start:start + chunk] = pair_ratio(rows)[:, cols].transpose(1, 2)
    # the float rounding of a computed second term against its per-pair sums (4x the worst-case bounds)
    safety = 1.0 - 4.0 * (c * n_cut + s2 + 4) * torch.finfo(dtype).eps / 2
    available = torch.ones(n, dtype=torch.bool, device=dev)
    picks: list[int] = []
    scores: list[float] = []
    exact = torch.ones((s2, 1), dtype=torch.float64, device=dev)  # p(y_A | w_j) over all configurations
    log_joint = None  # (M, 2K) log p(y^m_A | w_j), once sampling starts
    log_max = torch.zeros(s2, dtype=torch.float64, device=dev)  # log prod_i max_y p(y_i | w_j)
    low = torch.zeros((n, n_cut), dtype=torch.float64, device=dev)  # lower bounds of the per-pair sums
    g_prev = None
    m_starts = list(range(0, num_joint_samples, 1024))
    underflow = [False]  # every a_k(m) far below float32's range: G stays 0 (see _sampled_g)

    def draw(i: int, pool: BlockPool) -> None:
        """log_joint += log p(y^m_i | w_j) for M labels drawn from pick i's mean prediction: rows of the
        (C, 2K) table of its log probabilities, added in row blocks among the pool's threads."""
        p = mc_probs[i].double()
        mean = p.mean(dim=0)
        labels = torch.multinomial((mean / mean.sum()).cpu(), num_joint_samples, replacement=True,
                                   generator=generator).to(dev)
        table = torch.log(p.T)

        def work(starts: list[int]) -> None:
            for start in starts:
                log_joint[start:start + 1024] += table.index_select(0, labels[start:start + 1024])

        run_blocks(pool, work, m_starts)

    with BlockPool() as pool:  # the threads take separate row blocks (see common/blocks.py)
        for step in range(min(k, n)):
            if step < sampling_index:
                ratio = torch.exp(torch.log(exact) - log_max[:, None])
                a = (ratio[:kk] * ratio[kk:])[cols]  # (K', C^|A|)
                w = exact.sum(dim=1) / s2
                g = (exact @ a.T / s2).to(dtype)
            else:
                if log_joint is None:
                    log_joint = torch.zeros((num_joint_samples, s2), dtype=torch.float64, device=dev)
                    for i in picks:
                        draw(i, pool)
                g, w = _sampled_g(log_joint, log_max, pair_cols, n_cut, dtype, m_starts, pool, underflow)
            # the first term h F(x), F = sum_j W_j psum_j(x), per chunk of rows as the scores take it
            first = _first(psum, w, h, chunk, pool)
            score = torch.full((n,), -float("inf"), dtype=torch.float64, device=dev)
            if not bool(g.any()):  # nothing left to cut (G underflowed): the second term is exactly 0
                score[available] = (first[available] - 0.0) / kk
            elif screen and g_prev is not None:
                low *= _ratio(g, g_prev)
                bound = (first - low.sum(dim=1) * safety) / kk  # >= the exact score (see the docstring)
                bound[~available] = -float("inf")
                order = torch.argsort(bound, descending=True)
                todo = order[:probe][bound[order[:probe]] > -float("inf")]
                score[todo] = _evaluate(pt, cut, g, first, low, todo, kk, chunk, pool)
                rest = order[probe:][bound[order[probe:]] >= score.max()]
                if len(rest):
                    score[rest] = _evaluate(pt, cut, g, first, low, rest, kk, chunk, pool)
                g_prev = g
            else:
                score[:] = _evaluate(pt, cut, g, first, low, None, kk, chunk, pool)
                score[~available] = -float("inf")
                g_prev = g
            i = int(torch.argmax(score))
            picks.append(i)
            scores.append(float(score[i]))
            available[i] = False
            log_max += torch.log(pmax[i])
            if step + 1 < sampling_index:
                exact = (exact[:, :, None] * mc_probs[i].double()[:, None, :]).reshape(s2, -1)
            elif log_joint is not None and step + 1 < min(k, n):
                draw(i, pool)
    return np.asarray(picks, dtype=np.int64), np.asarray(scores)


def _sampled_g(log_joint: torch.Tensor, log_max: torch.Tensor, pair_cols: torch.Tensor, n_cut: int,
               dtype: torch.dtype, m_starts: list[int], pool: BlockPool, underflow: list[bool]) -> tuple:
    """G (2K, K') = 1/M Q^T a in `dtype` and W = mean_m Q(m) for the sampled configurations: the row-wise
    softmax, exp and casts in row blocks among the pool's threads (the same numbers as on one thread),
    the mean and the product one operation each, as before.

    a_k(m) = exp(la_k(m)) only shrinks as picks are added (each pick multiplies it by a ratio <= 1); in
    float32 every a rounds to 0 once la < -104 (exp(-104) < 2^-150), and G is 0 without the product. Once
    la < -105 everywhere, la is no longer computed: the rounding of its two running sums can raise it
    above its value at that step by at most ~1e-5 over 1e4 picks (|sums| < 1e6: float32 probabilities'
    logarithms are > -104), far from -104."""
    m, s2 = log_joint.shape
    q = torch.empty_like(log_joint)
    zero = dtype == torch.float32 and (n_cut == 0 or underflow[0])
    la = None if zero else torch.empty((m, n_cut), dtype=torch.float64, device=log_joint.device)
    tops = torch.full((len(m_starts),), -torch.inf, dtype=torch.float64, device=log_joint.device)
    every = n_cut == s2 // 2

    def work(starts: list[int]) -> None:
        for start in starts:
            rows = slice(start, start + 1024)
            q[rows] = torch.softmax(log_joint[rows], dim=1)
            if la is not None:
                # the split pairs' columns (when every pair is split, all of them, in order: no gather)
                lj = log_joint[rows] if every else torch.index_select(log_joint[rows], 1, pair_cols)
                lb = lj - log_max[pair_cols]
                la[rows] = lb[:, :n_cut] + lb[:, n_cut:]
                tops[start // 1024] = la[rows].max()

    run_blocks(pool, work, m_starts)
    w = q.mean(dim=0)
    top = float(tops.max())
    if dtype == torch.float32 and top < -105.0:
        underflow[0] = True
    if zero or (dtype == torch.float32 and top < -104.0):
        return torch.zeros((s2, n_cut), dtype=dtype, device=q.device), w
    q_d = torch.empty((m, s2), dtype=dtype, device=q.device)
    a_d = torch.empty((m, n_cut), dtype=dtype, device=q.device)

    def cast(starts: list[int]) -> None:
        for start in starts:
            rows = slice(start, start + 1024)
            q_d[rows] = q[rows]
            a_d[rows] = torch.exp(la[rows])

    run_blocks(pool, cast, m_starts)
    return q_d.T @ a_d / m, w


def _first(psum: torch.Tensor, w: torch.Tensor, h: float, chunk: int, pool: BlockPool) -> torch.Tensor:
    """h F(x) = h sum_j W_j psum_j(x), one matrix-vector product per chunk of rows (as the scores always took
    it: a row's number depends on its place in the chunk), the chunks among the pool's threads."""
    out = torch.empty(psum.shape[0], dtype=torch.float64, device=psum.device)

    def work(starts: list[int]) -> None:
        for start in starts:
            out[start:start + chunk] = psum[start:start + chunk] @ w

    run_blocks(pool, work, list(range(0, psum.shape[0], chunk)))
    return out * h


def _evaluate(pt: torch.Tensor, cut: torch.Tensor, g: torch.Tensor, first: torch.Tensor, low: torch.Tensor,
              rows: torch.Tensor | None, kk: int, chunk: int, pool: BlockPool) -> torch.Tensor:
    """Exact scores (h F(x) - second(x)) / K of the rows (all when None), in blocks among the pool's threads;
    refreshes the rows' per-pair lower bounds `low` with their computed per-pair sums."""
    total = pt.shape[0] if rows is None else len(rows)
    out = torch.empty(total, dtype=torch.float64, device=pt.device)

    def work(starts: list[int]) -> None:
        for start in starts:
            sel = slice(start, start + chunk) if rows is None else rows[start:start + chunk]
            second, per_pair = _rows_second(pt, cut, g, sel)
            out[start:start + chunk] = (first[sel] - second) / kk
            low[sel] = per_pair.double()

    run_blocks(pool, work, list(range(0, total, chunk)))
    return out


class BatchBalance(Balance):
    """Greedy batch of maximal joint BALanCe score (equivalence-class edges cut by the batch's labels)."""

    word = "batch_balance"

    def __init__(self, mc_samples: PositiveInt = 100, anneal_ratio: NonNegativeFloat = 0.25,
                 accuracy: Literal["labeled", "test"] = "labeled", tau: NonNegativeFloat | None = None,
                 num_joint_samples: PositiveInt = 10000, sampling_index: NonNegativeInt = 2):
        super().__init__(mc_samples, anneal_ratio, accuracy, tau)
        if int(num_joint_samples) < 1:
            raise ConfigError(f"strategy.num_joint_samples must be >= 1, got {num_joint_samples}")
        if int(sampling_index) < 0:
            raise ConfigError(f"strategy.sampling_index must be >= 0, got {sampling_index}")
        self.num_joint_samples = int(num_joint_samples)
        self.sampling_index = int(sampling_index)

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(int(ctx.rng.integers(2**62)))  # the authors draw on the CPU
        probs, split = self.hypotheses(ctx, candidates)
        picks, _ = batch_balance_batch(probs, split, k, self.num_joint_samples, self.sampling_index, gen)
        return candidates[picks]
