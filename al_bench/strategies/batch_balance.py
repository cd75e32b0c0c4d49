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

Cost per greedy step: O(M K K') for G plus O(N C K K') for the scores, K' <= K the split pairs (one
(N C, 2K) x (2K, K') product, in `dtype`: float32 by default, as the authors compute); k steps in all:
O(k K K' (M + N C)). Memory O(N K C + M K) plus a chunk. With N = 10k, K = 100, C = 10 and K' = 86
split pairs that is 1.7e9 multiply-adds per step (the (N C, 2K) x (2K, K') float32 product, ~50 ms of
one CPU thread at ~64 GFLOP/s on the shared VM) plus ~20 ms for the (M, 2K) configuration matrices
(softmax, exp, the (2K, M) x (M, K') product): k = 1,000 is ~70 s of one thread, measured 124 s of CPU
time on 2 threads of the loaded VM. The scores' chunks are shared among torch's threads (common/blocks.py);
with `mc_samples: 20` the product is 25 times smaller and the O(N C K + M K) rest dominates.

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


def _scores(pt: torch.Tensor, psum: torch.Tensor, cut: torch.Tensor, w: torch.Tensor, g: torch.Tensor,
            h: float, k: int, chunk: int, pool: BlockPool | None = None) -> torch.Tensor:
    """1/K sum_y sum_j p_j(y) [W_j H - sum_k G_jk cut_k(y)] for pt (N, C, 2K) = p_j(y), cut (N, C, K') =
    b_k(y) and G (2K, K') over the K' split pairs: one (N C, 2K) x (2K, K') product per chunk, the chunks
    shared among the pool's threads."""
    n, c, _ = pt.shape
    out = torch.empty(n, dtype=torch.float64, device=pt.device)
    g = g.to(pt.dtype)

    def work(starts: list[int]) -> None:
        for start in starts:
            rows = pt[start:start + chunk]
            t = (rows.reshape(-1, rows.shape[2]) @ g).view(rows.shape[0], c, -1)  # sum_j p_j(y) G_jk
            second = (t * cut[start:start + chunk]).sum(dim=(1, 2)).double()
            out[start:start + chunk] = (h * (psum[start:start + chunk] @ w) - second) / k

    starts = list(range(0, n, chunk))
    run_blocks(pool, work, starts)
    return out


def batch_balance_batch(mc_probs: torch.Tensor, split: torch.Tensor, k: int, num_joint_samples: int = 10000,
                        sampling_index: int = 2, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Positions of k candidates chosen greedily by Batch-BALanCe from mc_probs (N, 2K, C) (pairs k
    and K + k) and split (K,), and each pick's score at its step."""
    probs = mc_probs.double()
    n, s2, c = probs.shape
    kk = s2 // 2
    dev = probs.device
    split = split.double().to(dev)
    h = float(split.sum())
    pmax = probs.amax(dim=2)  # (N, 2K)
    pt = probs.transpose(1, 2).to(dtype).contiguous()  # (N, C, 2K)
    psum = probs.sum(dim=2)  # (N, 2K), 1 for normalised rows
    cols = torch.nonzero(split).flatten()  # only the pairs split into two classes can be cut
    pair_cols, n_cut = torch.cat([cols, cols + kk]), len(cols)
    cut = pair_ratio(probs)[:, cols].transpose(1, 2).to(dtype).contiguous()  # (N, C, K'), split_k = 1
    available = torch.ones(n, dtype=torch.bool, device=dev)
    picks: list[int] = []
    scores: list[float] = []
    exact = torch.ones((s2, 1), dtype=torch.float64, device=dev)  # p(y_A | w_j) over all configurations
    log_joint = None  # (M, 2K) log p(y^m_A | w_j), once sampling starts
    log_max = torch.zeros(s2, dtype=torch.float64, device=dev)  # log prod_i max_y p(y_i | w_j)

    def draw(i: int) -> torch.Tensor:
        """log p(y^m_i | w_j) (M, 2K) for M labels drawn from pick i's mean prediction: rows of the (C, 2K)
        table of its log probabilities (a row gather, not M x 2K scattered reads)."""
        mean = probs[i].mean(dim=0)
        labels = torch.multinomial((mean / mean.sum()).cpu(), num_joint_samples, replacement=True,
                                   generator=generator)
        return torch.log(probs[i].T).index_select(0, labels.to(dev))

    with BlockPool() as pool:  # the threads take separate chunks of the scores (see common/blocks.py)
        for step in range(min(k, n)):
            if step < sampling_index:
                ratio = torch.exp(torch.log(exact) - log_max[:, None])
                a = (ratio[:kk] * ratio[kk:])[cols]  # (K', C^|A|)
                w = exact.sum(dim=1) / s2
                g = exact @ a.T / s2
            else:
                if log_joint is None:
                    log_joint = torch.zeros((num_joint_samples, s2), dtype=torch.float64, device=dev)
                    for i in picks:
                        log_joint += draw(i)
                q = torch.softmax(log_joint, dim=1)
                la = torch.index_select(log_joint, 1, pair_cols) - log_max[pair_cols]  # only the split pairs
                a = torch.exp(la[:, :n_cut] + la[:, n_cut:])  # (M, K')
                w = q.mean(dim=0)
                g = q.to(dtype).T @ a.to(dtype) / num_joint_samples  # (2K, K'), in `dtype` as the scores
            score = _scores(pt, psum, cut, w, g, h, kk, chunk, pool)
            score[~available] = -float("inf")
            i = int(torch.argmax(score))
            picks.append(i)
            scores.append(float(score[i]))
            available[i] = False
            log_max += torch.log(pmax[i])
            if step + 1 < sampling_index:
                exact = (exact[:, :, None] * probs[i][:, None, :]).reshape(s2, -1)
            elif log_joint is not None and step + 1 < min(k, n):
                log_joint += draw(i)
    return np.asarray(picks, dtype=np.int64), np.asarray(scores)


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
