"""BalEntAcq: balanced entropy acquisition (Woo, "Active Learning in Bayesian Neural Networks with
Balanced Entropy Learning Principle", ICLR 2023, arXiv:2105.14559).

Each class probability P_c under the posterior (S MC-dropout samples) is approximated by the Beta
distribution with the same mean m_c and variance v_c: alpha_c = m_c (m_c (1 - m_c) / v_c - 1),
beta_c = alpha_c (1 - m_c) / m_c. The marginalised joint entropy is then in closed form,
MJEnt = sum_c m_c h(Beta(alpha_c + 1, beta_c)) + H(Y), h the differential entropy,
and BalEnt = MJEnt / (H(Y) + log 2). The acquisition is 1 / BalEnt where BalEnt >= 0 and BalEnt
where it is negative: points whose uncertainty and information are balanced (BalEnt near 0+) come
first, then the positive ones, then the negative ones.

Choices: population moments over the S samples; v_c floored at 1e-9 and alpha, beta at 1e-9;
h <= 0 on [0, 1], so rounding above 0 is clipped; `mc_samples` S.

Cost: time O(N S C), memory O(N S C).

References: arXiv:2105.14559
"""

from __future__ import annotations

import math

import torch

from al_bench.strategies.bald import MCDropoutScore, entropy_last


def beta_entropy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differential entropy of Beta(a, b)."""
    log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    return log_beta - (a - 1) * torch.digamma(a) - (b - 1) * torch.digamma(b) + (a + b - 2) * torch.digamma(a + b)


def balanced_entropy(mc_probs: torch.Tensor) -> torch.Tensor:
    """BalEnt[x] = MJEnt[x] / (H(Y) + log 2) for mc_probs (N, S, C)."""
    p = mc_probs.double()
    m = p.mean(dim=1).clamp(1e-9, 1 - 1e-9)
    v = p.var(dim=1, unbiased=False).clamp_min(1e-9)
    alpha = (m * (m * (1 - m) / v - 1)).clamp_min(1e-9)
    beta = (alpha * (1 - m) / m).clamp_min(1e-9)
    h = beta_entropy(alpha + 1, beta).clamp_max(0.0)
    mean_h = entropy_last(m)
    return ((m * h).sum(dim=1) + mean_h) / (mean_h + math.log(2.0))


def balentacq(mc_probs: torch.Tensor) -> torch.Tensor:
    bal = balanced_entropy(mc_probs)
    return torch.where(bal >= 0, 1.0 / bal.clamp_min(1e-12), bal)


class Balentacq(MCDropoutScore):
    """The candidates of balanced entropy nearest 0 from above first, then the rest."""

    word = "balentacq"

    def score(self, preds):
        return balentacq(preds["mc_probs"])
