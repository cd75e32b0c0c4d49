"""Maximum predictive entropy (Shannon 1948; in AL: Settles 2009, "Active Learning Literature
Survey"; as a deep-AL baseline in Yoo & Kweon 2019, arXiv:1905.03677), in nats, highest first.

Checked against baal (baal-org/baal, heuristics.Entropy) and DeepAL+ (SineZHAN/deepALplus,
EntropySampling) in tests/golden/test_entropy.py.
"""

from __future__ import annotations

from al_bench.strategies.base import ScoreStrategy
from al_bench.strategies.common.uncertainty import entropy


class Entropy(ScoreStrategy):
    """The candidates whose predicted class distribution is flattest."""

    def score(self, preds):
        return entropy(preds["probs"])
