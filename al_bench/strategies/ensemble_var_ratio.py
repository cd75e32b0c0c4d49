"""Variation ratio over a deep ensemble (Beluch et al., CVPR 2018): 1 - f_m / M, f_m the number of the
M members that vote for the modal class (al_bench.strategies.var_ratio.variation_ratio on the
members' probabilities (N, M, C)); it takes M + 1 values at most, so ties between candidates are
common and go to the selection's seeded generator. Training and evaluation: ensemble_entropy.

References: Beluch et al., "The power of ensembles for active learning in image classification",
CVPR 2018; Freeman 1965.
"""

from al_bench.strategies.ensemble_entropy import EnsembleScore
from al_bench.strategies.var_ratio import variation_ratio


class EnsembleVarRatio(EnsembleScore):
    """The candidates whose ensemble members vote least unanimously."""

    def score(self, preds):
        return variation_ratio(preds["member_probs"])
