"""Variation ratios over MC-dropout samples (Freeman 1965; for deep AL: Gal, Islam & Ghahramani,
ICML 2017, arXiv:1703.02910): 1 - f_m / S, f_m the number of the S samples that vote for the modal
class. Ties between candidates are frequent (the score takes S + 1 values); earlier first.

Cost: time O(N S C), memory O(N S C).

References: arXiv:1703.02910
"""

from __future__ import annotations

import torch

from al_bench.strategies.bald import MCDropoutScore


def variation_ratio(mc_probs: torch.Tensor) -> torch.Tensor:
    votes = torch.nn.functional.one_hot(mc_probs.argmax(dim=2), mc_probs.shape[2]).sum(dim=1)
    return 1.0 - votes.max(dim=1).values.double() / mc_probs.shape[1]


class VarRatio(MCDropoutScore):
    """The candidates whose dropout samples vote least unanimously."""

    word = "var_ratio"

    def score(self, preds):
        return variation_ratio(preds["mc_probs"])
