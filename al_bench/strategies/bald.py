"""BALD: Bayesian active learning by disagreement, with MC-dropout samples (Houlsby et al. 2011,
arXiv:1112.5745; for deep image models: Gal, Islam & Ghahramani, "Deep Bayesian Active Learning
with Image Data", ICML 2017, arXiv:1703.02910).

BALD is H(mean_s p_s) - mean_s H(p_s) in nats, highest first, as the public code it is checked against in
tests/golden/test_bald.py: baal (baal-org/baal, heuristics.BALD), DeepAL+ (SineZHAN/deepALplus, BALDDropout,
which sorts E H - H(mean) ascending: the same order) and the paper authors' Keras script
(Riashat/Deep-Bayesian-Active-Learning, Dropout_Bald_Q10_N1000_Paper.py, in bits: the same order).

Cost: one trunk pass over the N candidates, then S head passes: time O(N S C D), memory O(N S C).

References: arXiv:1703.02910, arXiv:1112.5745
"""

from __future__ import annotations

import torch

from al_bench.strategies.common.mc_dropout import MCDropoutScore
from al_bench.strategies.common.uncertainty import entropy


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """I(y; w | x) = H(mean_s p_s) - mean_s H(p_s) for mc_probs (N, S, C)."""
    return entropy(mc_probs.double().mean(dim=1)) - entropy(mc_probs).mean(dim=1)


class Bald(MCDropoutScore):
    """The candidates on which the dropout samples disagree most (mutual information)."""

    word = "bald"

    def score(self, preds):
        return bald(preds["mc_probs"])
