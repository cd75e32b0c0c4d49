"""Variation ratio of a sum-product network's class conditional (Khosravani & Zilles, TMLR 2024,
arXiv:2206.09798; variation ratio: Freeman 1965): 1 - max_c p(y = c | x), p the conditional of an SPN
learned on the labeled set's CNN embeddings (al_bench.strategies.spn_entropy, common/spn.py).

The SPN gives one exact predictive distribution per candidate, not MC samples, so the variation
ratio 1 - f_modal / S of Gal et al. (arXiv:1703.02910) has no samples to count; its value on the
predictive distribution itself, 1 - max_c p(c | x) (the reading BatchBALD's code uses on the mean MC
prediction), is the score here. Which reading the paper's code used could not be checked (no code,
text not at hand).

References: arXiv:2206.09798
"""

from __future__ import annotations

from al_bench.strategies.common.spn import log_one_minus_max
from al_bench.strategies.spn_entropy import SpnScore


class SpnVarRatio(SpnScore):
    """The candidates whose SPN class conditional puts the least mass on its modal class: score
    log(1 - max_c p(c | x)), the mass off the modal class summed in log space (see spn_entropy)."""

    def score(self, log_probs):
        return log_one_minus_max(log_probs)
