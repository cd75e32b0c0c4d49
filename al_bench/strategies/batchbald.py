"""BatchBALD (Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and Diverse Batch Acquisition for
Deep Bayesian Active Learning", NeurIPS 2019, arXiv:1906.08158).

Greedy maximisation of the joint mutual information I(y_1..y_b; w) = H(y_1..y_b) - sum_i E_w H(y_i|w):
step b adds the candidate n maximising H(y_A, y_n) - E_w H(y_n|w) (the score reported also subtracts
the picks' sum_i E_w H(y_i|w), as the authors' code does). As in the authors' code (BlackHC/batchbald_redux,
batchbald.py `get_batchbald_batch` with joint_entropy.py `DynamicJointEntropy`), the joint entropy of the
picks A with each candidate is exact (all C^|A| label configurations of A, an M x S matrix of
p(y_A | w_s)) while C^|A| <= M = `num_joint_samples`; beyond that it is a Monte-Carlo estimate drawn
afresh at every step: for each of the S weight samples w_j, M // S configurations y^m_A ~ p(y_A | w_j)
(stratified over the weight samples), and H(y_A, y_n) ~ -1/M sum_m sum_y p(y^m_A, y) log p(y^m_A, y) /
p(y^m_A). The draw is the authors' (one multinomial call over the (|A| S, C) rows, M // S draws each),
so with the same generator state the sampled picks equal theirs. Rows are rescaled to a maximum of one
(and the scale added back), so long batches do not underflow.

Choices: the S weight samples are S dropout masks on the head shared by all candidates
(consistent MC dropout, as the joint needs); `mc_samples` S, `num_joint_samples` M. When M < S one
configuration is drawn per weight sample (the authors' code draws none).

Cost per greedy step: time O(N M S C) (+ O(|A| S M) to redraw the configurations), memory
O(N S C + M S + |A| M) plus a block of the (M, N C) joint; k steps in all. With M = 10,000, S = 20,
C = 10 and N = 10k that is 2e10 multiply-adds and 1e9 p log p per step: 8.5 s of one CPU thread on the
shared 2-core VM (about 9 GFLOP/s for the product, 3-4 ns per p log p), so k = 1,000 takes over an hour
on 2 threads; 60 s covers about a dozen steps at M = 10,000 (the first four, with C^|A| <= 1,000 exact
configurations, are cheap), or M of about 100 (`num_joint_samples`) for k = 1,000 (M = 200: 0.15 s a
step on one thread). The authors' code does the same work per step (batchbald_redux's
SampledJointEntropy.compute_batch, an (M, S) x (S, C) product per candidate, and DynamicJointEntropy
redraws the configurations of every pick at every step), so nothing carries over between steps: keeping
the picks' joint as an (M, S) matrix updated per pick would change the draws, hence the picks.

References: arXiv:1906.08158
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.base import SelectionContext, Strategy
from al_bench.strategies.common.blocks import BlockPool, run_blocks
from al_bench.strategies.common.mc_dropout import (
    check_mc_samples,
    consistent_mc_probs,
    require_dropout,
    torch_generator,
)
from al_bench.strategies.common.uncertainty import entropy


def joint_entropy(configs: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor,
                  chunk_elems: int = 1 << 18, pool: BlockPool | None = None) -> torch.Tensor:
    """H(y_A, y_n) for every candidate n: -sum_{m,y} weights_m p(y^m_A, y_n = y) log p(y^m_A, y_n = y),
    with configs (M, S) = p(y^m_A | w_s) and probs (N, S, C) = p(y_n | w_s).

    Per block of candidates: one (M, S) x (S, b C) product gives the joint probabilities (the 1/S folded
    into configs), p log p in place (xlogy: 0 at p = 0), the sum over y, then the weighted sum over the M
    configurations as one (M,) x (M, b) product; blocks of `chunk_elems` joint probabilities stay in cache
    and are shared among the pool's threads."""
    n, s, c = probs.shape
    m = configs.shape[0]
    scaled = configs / s
    flat = probs.permute(1, 0, 2).reshape(s, n * c)  # (S, N C)
    out = torch.empty(n, dtype=torch.float64, device=probs.device)
    step = max(1, chunk_elems // (m * c))

    def work(starts: list[int]) -> None:
        for start in starts:
            pj = scaled @ flat[:, start * c:(start + step) * c]  # (M, b C)
            torch.special.xlogy(pj, pj, out=pj)
            out[start:start + step] = -(weights @ pj.view(m, -1, c).sum(2))

    starts = list(range(0, n, step))
    run_blocks(pool, work, starts)
    return out


def sample_configs(probs: torch.Tensor, picks: list[int], m: int, generator: torch.Generator | None) -> tuple:
    """Draw max(1, m // S) label configurations of the picks per weight sample w_j, each label from p(y_i | w_j).
    Returns (configs, log_scale): p(y^m_A | w_s) = configs[m, s] exp(log_scale[m]), each row's maximum 1."""
    p = probs[picks]  # (A, S, C)
    a, s, c = p.shape
    per = max(1, m // s)
    labels = torch.multinomial(p.reshape(a * s, c), per, replacement=True, generator=generator)
    labels = labels.view(a, s * per)  # row j * per + r: drawn under w_j
    log_p = torch.zeros((s * per, s), dtype=torch.float64, device=probs.device)
    log_t = torch.log(p.transpose(1, 2))  # (A, C, S): a row per label, gathered per configuration
    for i in range(a):
        log_p += log_t[i].index_select(0, labels[i])  # -inf only where the label could not have been drawn
    log_scale = log_p.max(dim=1).values
    return torch.exp(log_p - log_scale[:, None]), log_scale


def batchbald_batch(mc_probs: torch.Tensor, k: int, num_joint_samples: int, generator: torch.Generator | None = None,
                    chunk_elems: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Positions of k candidates chosen greedily by BatchBALD from mc_probs (N, S, C), and each pick's
    score I(y_A, y_n; w) (the authors' candidate_scores)."""
    probs = mc_probs.double()
    n, s, c = probs.shape
    cond = entropy(probs).mean(dim=1)
    exact = torch.ones((1, s), dtype=torch.float64, device=probs.device)
    available = torch.ones(n, dtype=torch.bool, device=probs.device)
    picks: list[int] = []
    scores: list[float] = []
    with BlockPool() as pool:  # the threads take separate blocks of candidates (see common/blocks.py)
        for _ in range(min(k, n)):
            if c ** len(picks) <= num_joint_samples:
                ones = torch.ones(exact.shape[0], dtype=torch.float64, device=probs.device)
                h = joint_entropy(exact, ones, probs, chunk_elems, pool)
            else:  # importance weights 1 / (M p(y^m_A)) for configurations drawn from p(y_A)
                configs, log_scale = sample_configs(probs, picks, num_joint_samples, generator)
                weights = s / (configs.shape[0] * configs.sum(dim=1))
                h = joint_entropy(configs, weights, probs, chunk_elems, pool) - log_scale.mean()
            score = h - cond - cond[picks].sum()
            score[~available] = -float("inf")
            i = int(torch.argmax(score))
            picks.append(i)
            scores.append(float(score[i]))
            available[i] = False
            if c ** len(picks) <= num_joint_samples:
                exact = (exact[:, None, :] * probs[i].T[None, :, :]).reshape(-1, s)
    return np.asarray(picks, dtype=np.int64), np.asarray(scores)


def batchbald_select(mc_probs: torch.Tensor, k: int, num_joint_samples: int,
                     generator: torch.Generator | None = None) -> np.ndarray:
    """Positions of k candidates chosen greedily by BatchBALD from mc_probs (N, S, C)."""
    return batchbald_batch(mc_probs, k, num_joint_samples, generator)[0]


class Batchbald(Strategy):
    """Greedy batch of maximal joint mutual information with the model weights."""

    def __init__(self, mc_samples: int = 20, num_joint_samples: int = 10000):  # S, M
        self.mc_samples = check_mc_samples(mc_samples)
        if int(num_joint_samples) < 1:
            raise ConfigError(f"strategy.num_joint_samples must be >= 1, got {num_joint_samples}")
        self.num_joint_samples = int(num_joint_samples)

    def check(self, model) -> None:
        require_dropout(model, "batchbald")

    def select(self, ctx: SelectionContext, candidates: np.ndarray, k: int) -> np.ndarray:
        gen = torch_generator(ctx)
        probs = consistent_mc_probs(ctx, candidates, self.mc_samples, "batchbald", gen)
        return candidates[batchbald_select(probs, k, self.num_joint_samples, gen)]
