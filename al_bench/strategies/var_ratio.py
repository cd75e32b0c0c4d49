"""Variation ratios over MC-dropout samples (Freeman 1965; for deep AL: Gal, Islam & Ghahramani,
ICML 2017, arXiv:1703.02910): 1 - f_m / S, f_m the number of the S samples that vote for the modal
class. Ties between candidates are frequent (the score takes S + 1 values).

The votes follow the paper authors' code (Riashat/Deep-Bayesian-Active-Learning@e4e970c,
MC_Dropout_Keras/Dropout_VarRatio_Q10_N1000_Paper.py: scipy.stats.mode over the S predicted classes),
the golden reference of tests/golden/test_var_ratio.py. Other readings in public code:
- `estimate: mean`: 1 - max_c mean_s p_s(c), on the mean MC prediction (BlackHC/BatchBALD and
  jaeohwoo/BalancedEntropy, src/acquisition_functions.py `variation_ratios`); no ties;
- DeepAL+ (SineZHAN/deepALplus, query_strategies/var_ratio.py) takes 1 - max p of the deterministic
  prediction, which is `strategy=least_confidence`.

Cost: time O(N S C), memory O(N S C).

References: arXiv:1703.02910
"""

from __future__ import annotations

import torch

from al_bench import ConfigError
from al_bench.strategies.common.mc_dropout import MCDropoutScore

ESTIMATES = ("votes", "mean")


def variation_ratio(mc_probs: torch.Tensor) -> torch.Tensor:
    votes = torch.nn.functional.one_hot(mc_probs.argmax(dim=2), mc_probs.shape[2]).sum(dim=1)
    return 1.0 - votes.max(dim=1).values.double() / mc_probs.shape[1]


def mean_variation_ratio(mc_probs: torch.Tensor) -> torch.Tensor:
    return 1.0 - mc_probs.double().mean(dim=1).max(dim=1).values


class VarRatio(MCDropoutScore):
    """The candidates whose dropout samples vote least unanimously."""

    word = "var_ratio"

    def __init__(self, mc_samples: int = 20, estimate: str = "votes"):
        super().__init__(mc_samples)
        if estimate not in ESTIMATES:
            raise ConfigError(f"strategy.estimate must be one of {ESTIMATES}, got {estimate!r}")
        self.estimate = estimate

    def score(self, preds):
        fn = variation_ratio if self.estimate == "votes" else mean_variation_ratio
        return fn(preds["mc_probs"])
