"""BalEntAcq: balanced entropy acquisition (Woo, "Active Learning in Bayesian Neural Networks with
Balanced Entropy Learning Principle", ICLR 2023, arXiv:2105.14559).

Each class probability P_c under the posterior (S MC-dropout samples) is approximated by the Beta
distribution with the same mean m_c and variance v_c: alpha_c = m_c (m_c (1 - m_c) / v_c - 1),
beta_c = alpha_c (1 - m_c) / m_c. The marginalised joint entropy is in closed form,
MJEnt = sum_c min(0, m_c h(Beta(alpha_c + 1, beta_c))) + H(Y), h the differential entropy, H(Y) the
entropy of the mean prediction. The score is (H(Y) + log 2) / (MJEnt + H(Y)) where that is >= 0 and
its inverse where it is negative: balanced points (ratio near 0+) first, then the other positive
ones, then the negative ones.

As the authors' code (jaeohwoo/BalancedEntropy@5cc1a5c, src/torch_utils.py, `balentacq` and
`marginalized_posterior_entropy`; golden reference of tests/golden/test_balentacq.py):
- H(Y) is added to MJEnt, which already holds it, so the denominator is sum_c m_c h_c + 2 H(Y);
  `paper_ratio: true` is MJEnt / (H(Y) + log 2) inverted, al-bench's former score, from its reading
  of the paper (not re-read against the PDF when this changed);
- v_c is the unbiased sample variance (S - 1 in the denominator); m_c and v_c are floored at 1e-9,
  alpha and beta are not clipped; a positive m_c h_c is set to 0; a NaN MJEnt becomes -99999999999.
One departure, by default: log B(a, b) is lgamma(a) + lgamma(b) - lgamma(a + b) (`log_beta: stable`).
The authors take log(exp(.) + 1e-32) (`log_beta: authors`, which reproduces their scores): where
B < 1e-32 (narrow posteriors, alpha + beta in the hundreds) log B is -73.68 instead of e.g. -1735,
h comes out large and positive, and the class term, which should be very negative, is zeroed.
Numbers: m = 0.5, v = 1e-4 gives Beta(1250.5, 1249.5), h = -3.1864 (scipy.stats.beta(...).entropy(),
and `stable`), the authors' expression +1658.3. On the golden input 134 of 200 rows have such a
class, and `authors` ranks first the two most confident rows (max mean p 0.9993 and 0.9988, H(Y)
0.007 nats, BALD 2e-7): their dominant class has h = -8.94 but gets +3839, so MJEnt ~ H(Y) and the
ratio (H(Y) + log 2) / 2 H(Y) explodes; with the exact h their BalEnt is negative and they rank
last (199th and 198th of 200). `stable` keeps 25 of the authors' top-40 picks there.
H(Y) uses 0 log 0 = 0 (the authors feed log-softmax outputs, so their 0 log 0 never arises).

Cost: time O(N S C), memory O(N S C).

References: arXiv:2105.14559
"""

from __future__ import annotations

import math

import torch

from al_bench import ConfigError
from al_bench.strategies.common.mc_dropout import MCDropoutScore
from al_bench.strategies.common.uncertainty import entropy

LOG_BETA = ("authors", "stable")
NAN_MJENT = -99999999999.0  # the authors' stand-in for a NaN MJEnt


def beta_entropy(a: torch.Tensor, b: torch.Tensor, log_beta: str = "stable") -> torch.Tensor:
    """Differential entropy of Beta(a, b); `log_beta="authors"` takes log B through exp(.) + 1e-32."""
    log_b = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    if log_beta == "authors":
        log_b = torch.log(torch.exp(log_b) + 1e-32)
    return log_b - (a - 1) * torch.digamma(a) - (b - 1) * torch.digamma(b) + (a + b - 2) * torch.digamma(a + b)


def marginalised_joint_entropy(mc_probs: torch.Tensor, log_beta: str = "stable") -> torch.Tensor:
    """MJEnt[x] = sum_c min(0, m_c h(Beta(alpha_c + 1, beta_c))) + H(Y) for mc_probs (N, S, C)."""
    p = mc_probs.double()
    m = p.mean(dim=1).clamp_min(1e-9)
    v = p.var(dim=1, unbiased=True).clamp_min(1e-9)
    alpha = m * m * (1 - m) / v - m
    beta = (1 / m - 1) * alpha
    term = m * beta_entropy(alpha + 1, beta, log_beta)
    term = torch.where(term > 0, torch.zeros_like(term), term)  # NaN stays NaN, as theirs
    mjent = term.sum(dim=1) + entropy(p.mean(dim=1))
    return torch.nan_to_num(mjent, nan=NAN_MJENT, posinf=math.inf, neginf=-math.inf)


def balentacq(mc_probs: torch.Tensor, log_beta: str = "stable", paper_ratio: bool = False) -> torch.Tensor:
    """The acquisition score (higher first) for mc_probs (N, S, C)."""
    mean_h = entropy(mc_probs.double().mean(dim=1))
    mjent = marginalised_joint_entropy(mc_probs, log_beta)
    ratio = (mean_h + math.log(2.0)) / (mjent if paper_ratio else mjent + mean_h)
    return torch.where(ratio < 0, 1.0 / ratio, ratio)


class Balentacq(MCDropoutScore):
    """The candidates of balanced entropy nearest 0 from above first, then the rest."""

    word = "balentacq"

    def __init__(self, mc_samples: int = 20, log_beta: str = "stable", paper_ratio: bool = False):
        super().__init__(mc_samples)
        if log_beta not in LOG_BETA:
            raise ConfigError(f"strategy.log_beta must be one of {LOG_BETA}, got {log_beta!r}")
        self.log_beta = log_beta
        self.paper_ratio = bool(paper_ratio)

    def score(self, preds):
        return balentacq(preds["mc_probs"], self.log_beta, self.paper_ratio)
