"""Least confidence (Lewis & Gale 1994; Settles 2009, "Active Learning Literature Survey"): the lowest
max-probability first.

Checked against baal (baal-org/baal, heuristics.Certainty, max p sorted ascending) and DeepAL+
(SineZHAN/deepALplus, LeastConfidence) in tests/golden/test_least_confidence.py. DeepAL+'s VarRatio
computes the same score on the same deterministic prediction.
"""

from __future__ import annotations

from al_bench.strategies.base import ScoreStrategy


class LeastConfidence(ScoreStrategy):
    """The candidates whose most probable class has the lowest probability: score 1 - max p."""

    def score(self, preds):
        return 1.0 - preds["probs"].double().max(dim=1).values
