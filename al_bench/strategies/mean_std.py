"""Mean standard deviation over MC-dropout samples (Kampffmeyer et al. 2016; for deep AL: Gal,
Islam & Ghahramani, ICML 2017, arXiv:1703.02910): the per-class standard deviation of p_s(c|x)
across the S samples (population form sqrt(E[p^2] - E[p]^2)), averaged over the C classes.

As DeepAL+ (SineZHAN/deepALplus, query_strategies/mean_std.py, np.std over the samples), the golden
reference of tests/golden/test_mean_std.py. BlackHC/BatchBALD and jaeohwoo/BalancedEntropy
(`mean_stddev`) take the unbiased std, sqrt(S / (S - 1)) times this score: the same order. Not the
same method: baal's `Variance` (mean over classes of the variance, a different order) and the paper
authors' Keras script Dropout_Segnet_Paper_Q10_N1000.py (Riashat/Deep-Bayesian-Active-Learning), whose
std is over a single value, hence 0 for every input.

Cost: time O(N S C), memory O(N S C).

References: arXiv:1703.02910
"""

from __future__ import annotations

import torch

from al_bench.strategies.common.mc_dropout import MCDropoutScore


def mean_std(mc_probs: torch.Tensor) -> torch.Tensor:
    return mc_probs.double().std(dim=1, unbiased=False).mean(dim=1)


class MeanStd(MCDropoutScore):
    """The candidates whose class probabilities vary most across dropout samples."""

    word = "mean_std"

    def score(self, preds):
        return mean_std(preds["mc_probs"])
