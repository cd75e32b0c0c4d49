"""BALD over a deep ensemble (Beluch et al., CVPR 2018): the mutual information between the label and
the member, H(mean_m p_m) - mean_m H(p_m) in nats, the members' probabilities (N, M, C) in place of
MC-dropout samples (al_bench.strategies.bald.bald). Training and evaluation: ensemble_entropy.

References: Beluch et al., "The power of ensembles for active learning in image classification",
CVPR 2018; BALD: Houlsby et al. 2011, arXiv:1112.5745.
"""

from al_bench.strategies.bald import bald
from al_bench.strategies.ensemble_entropy import EnsembleScore


class EnsembleBald(EnsembleScore):
    """The candidates on which the ensemble's members disagree most (mutual information)."""

    def score(self, preds):
        return bald(preds["member_probs"])
