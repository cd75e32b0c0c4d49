"""Mean standard deviation over MC-dropout samples (Kampffmeyer et al. 2016; for deep AL: Gal,
Islam & Ghahramani, ICML 2017, arXiv:1703.02910): the per-class standard deviation of p_s(c|x)
across the S samples (population form sqrt(E[p^2] - E[p]^2)), averaged over the C classes.

Cost: time O(N S C), memory O(N S C).

References: arXiv:1703.02910
"""

from __future__ import annotations

import torch

from al_bench.strategies.bald import MCDropoutScore


def mean_std(mc_probs: torch.Tensor) -> torch.Tensor:
    return mc_probs.double().std(dim=1, unbiased=False).mean(dim=1)


class MeanStd(MCDropoutScore):
    """The candidates whose class probabilities vary most across dropout samples."""

    word = "mean_std"

    def score(self, preds):
        return mean_std(preds["mc_probs"])
