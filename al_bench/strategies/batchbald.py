"""BatchBALD (Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and Diverse Batch Acquisition for
Deep Bayesian Active Learning", NeurIPS 2019, arXiv:1906.08158).

Greedy maximisation of the joint mutual information I(y_1..y_b; w) = H(y_1..y_b) - sum_i E_w H(y_i|w):
step b adds the candidate n maximising H(y_A, y_n) - E_w H(y_n|w). The joint entropy is exact
(all C^|A| label configurations of the picks A, as an M x S matrix of p(y_A | w_s)) while
C^|A| * C <= `num_joint_samples`; beyond that it is the paper's Monte-Carlo estimate: M =
`num_joint_samples` configurations are drawn from p(y_A) (a weight sample s, then each label from
p(y_i | w_s)), and H(y_A, y_n) ~ -1/M sum_m sum_y p(y | y^m_A) log p(y^m_A, y). Rows are rescaled
to sum to one (only a candidate-independent constant changes), so long batches do not underflow.

Choices: the S weight samples are S dropout masks on the head shared by all candidates
(consistent MC dropout, as the joint needs); `mc_samples` S, `num_joint_samples` M.

Cost per greedy step: time O(N M S C), memory O(N S C + M S) plus a chunk of the (N, M, C) joint;
k steps in all. With M = 10,000, S = 20, C = 10 that is 2e10 multiply-adds per step for N = 10k.

References: arXiv:1906.08158
"""

from __future__ import annotations

import numpy as np
import torch

from al_bench import ConfigError
from al_bench.strategies.bald import require_dropout, check_mc_samples, consistent_mc_probs, entropy_last, torch_generator
from al_bench.strategies.base import SelectionContext, Strategy


def joint_entropy(configs: torch.Tensor, weights: torch.Tensor, probs: torch.Tensor,
                  chunk_elems: int = 1 << 22) -> torch.Tensor:
    """H(y_A, y_n) for every candidate n: -sum_{m,y} weights_m p(y^m_A, y_n = y) log p(y^m_A, y_n = y),
    with configs (M, S) = p(y^m_A | w_s) and probs (N, S, C) = p(y_n | w_s)."""
    n, s, c = probs.shape
    out = torch.empty(n, dtype=torch.float64, device=probs.device)
    step = max(1, chunk_elems // (configs.shape[0] * c))
    for start in range(0, n, step):
        pj = torch.einsum("ms,nsy->nmy", configs, probs[start:start + step]) / s
        out[start:start + step] = -(weights[None, :, None] * pj * torch.log(pj.clamp_min(1e-300))).sum(dim=(1, 2))
    return out


def sample_configs(probs: torch.Tensor, picks: list[int], m: int, generator: torch.Generator) -> tuple:
    """Draw m label configurations of the picks from p(y_A): a weight sample per configuration, then
    each label from p(y_i | w). Returns (weight sample per row (m,), p(y^m_A | w_s) (m, S), rescaled)."""
    s = probs.shape[1]
    rows = torch.randint(0, s, (m,), device=probs.device, generator=generator)
    configs = torch.ones((m, s), dtype=torch.float64, device=probs.device)
    for i in picks:
        configs = extend_sampled(configs, rows, probs[i], generator)
    return rows, configs


def extend_sampled(configs, rows, probs_i, generator):
    y = torch.multinomial(probs_i[rows].float(), 1, generator=generator).squeeze(1)  # (M,)
    configs = configs * probs_i[:, y].T  # (M, S): p(y^m_i | w_s)
    return configs / configs.sum(dim=1, keepdim=True).clamp_min(1e-300)


def batchbald_select(mc_probs: torch.Tensor, k: int, num_joint_samples: int,
                     generator: torch.Generator | None = None) -> np.ndarray:
    """Positions of k candidates chosen greedily by BatchBALD from mc_probs (N, S, C)."""
    probs = mc_probs.double()
    n, s, c = probs.shape
    cond = entropy_last(probs).mean(dim=1)
    configs = torch.ones((1, s), dtype=torch.float64, device=probs.device)
    rows = None  # set once the joint is sampled
    available = torch.ones(n, dtype=torch.bool, device=probs.device)
    picks: list[int] = []
    for _ in range(min(k, n)):
        if rows is None:
            weights = torch.ones(configs.shape[0], dtype=torch.float64, device=probs.device)
        else:  # importance weights 1 / (M p(y^m_A)); constant once rows are rescaled
            weights = s / (configs.shape[0] * configs.sum(dim=1))
        score = joint_entropy(configs, weights, probs) - cond
        score[~available] = -float("inf")
        i = int(torch.argmax(score))
        picks.append(i)
        available[i] = False
        if rows is None and configs.shape[0] * c * c <= num_joint_samples:
            configs = (configs[:, None, :] * probs[i].T[None, :, :]).reshape(-1, s)
        elif rows is None:
            rows, configs = sample_configs(probs, picks, num_joint_samples, generator)
        else:
            configs = extend_sampled(configs, rows, probs[i], generator)
    return np.asarray(picks, dtype=np.int64)


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
